"""Load testing a running genre_serve: the asyncio sweep and a Locust file."""
