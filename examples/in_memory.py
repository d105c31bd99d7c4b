"""The in-memory Quick Start of pyncette 1.x, unchanged (only the quotes follow this repository's style).

``Pyncette()`` with no arguments uses the default backend: SQLite in memory when pyncette-sqlite is
installed, otherwise the memory backend of pyncette-core. Nothing is persisted either way.
"""

from pyncette import Context, Pyncette

app = Pyncette()


@app.task(schedule="* * * * *")
async def hello(context: Context):
    print("Hello, world!")


if __name__ == "__main__":
    app.main()
