"""The Redis quick start of pyncette 1.x, unchanged: a task every ten seconds, state in Redis.

pip install pyncette-core pyncette-redis && python examples/redis_quickstart.py
"""

from pyncette import Context, Pyncette
from pyncette.redis import redis_repository

app = Pyncette(repository_factory=redis_repository, redis_url="redis://localhost")


@app.task(schedule="* * * * * */10")
async def foo(context: Context) -> None:
    print("This will run every 10 seconds")


if __name__ == "__main__":
    app.main()
