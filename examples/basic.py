"""The pyncette 1.x quick start: a task that runs every minute, on the default backend.

Run it with ``python examples/basic.py``; stop it with Ctrl-C.
"""

from pyncette import Context, Pyncette

app = Pyncette()


@app.task(schedule="* * * * *")
async def hello(context: Context) -> None:
    print(f"Hello, world! (scheduled at {context.scheduled_at:%H:%M:%S})")


if __name__ == "__main__":
    app.main()
