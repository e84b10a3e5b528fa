"""Locust file for people who use Locust: the same genre_recommend request
through tritonclient, on loopback by default.

    pip install locust
    locust -f genre_serve/loadtest/locustfile.py --headless -u 16 -r 4 -t 30s \
        --host 127.0.0.1:8000 [--histories FILE]

Locust monkey-patches the process with gevent on import: this module is the
only place in genre_serve that imports it.
"""

import random
import time

from locust import User, events, task

from genre_serve.client.core import parse_recommendations, recommend_request
from genre_serve.formats import repository as fmt
from genre_serve.loadtest.sweep import check_target, load_histories

HISTORIES = [["1", "2", "3"]]


@events.init_command_line_parser.add_listener
def _args(parser):
    parser.add_argument("--histories", default="", help="one history per line, ids comma separated")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--allow-remote", action="store_true")


@events.test_start.add_listener
def _start(environment, **_):
    global HISTORIES
    opts = environment.parsed_options
    check_target(environment.host, opts.allow_remote)
    if opts.histories:
        HISTORIES = load_histories(opts.histories)


class GenreUser(User):
    def on_start(self):
        import tritonclient.http as httpclient

        self.module = httpclient
        self.client_ = httpclient.InferenceServerClient(self.environment.host)

    @task
    def recommend(self):
        history = random.choice(HISTORIES)
        inputs, outputs = recommend_request(self.module, history, self.environment.parsed_options.k)
        t0 = time.perf_counter()
        exc = None
        try:
            parse_recommendations(self.client_.infer(fmt.RECOMMEND, inputs, outputs=outputs))
        except Exception as e:  # noqa: BLE001 - reported to Locust
            exc = e
        self.environment.events.request.fire(
            request_type="triton", name=fmt.RECOMMEND, response_time=(time.perf_counter() - t0) * 1e3,
            response_length=0, exception=exc,
        )
