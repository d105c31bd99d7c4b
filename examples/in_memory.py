"""The in-memory quick start of pyncette 1.x: a task every minute, nothing persisted."""

from pyncette import Context, Pyncette

app = Pyncette(backend="memory")


@app.task(schedule="* * * * *")
async def hello(context: Context) -> None:
    print("Hello, world!")


if __name__ == "__main__":
    app.main()
