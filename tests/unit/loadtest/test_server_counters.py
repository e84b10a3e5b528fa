"""The load test reads Triton's Prometheus text with prometheus_client's parser."""

from genre_serve.loadtest.sweep import model_counters


def test_server_counters_are_summed_over_versions_of_one_model_only():
    text = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="genre_recommend",version="1"} 10
nv_inference_request_success{model="genre_recommend",version="2"} 5
nv_inference_request_success{model="genre_ranker",version="2"} 99
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="genre_recommend",version="2"} 1.5e3
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0.5
"""
    assert model_counters(text) == {"nv_inference_request_success": 15.0, "nv_inference_queue_duration_us": 1500.0}


def test_stage_times_per_user_come_from_genre_serves_counters():
    from genre_serve.loadtest.sweep import server_side

    def text(seconds: float, users: int) -> str:
        return f"""# HELP genre_serve_stage_seconds Seconds per stage
# TYPE genre_serve_stage_seconds counter
genre_serve_stage_seconds{{model="genre_recommend",stage="retrieval",version="1"}} {seconds}
genre_serve_stage_seconds{{model="genre_recommend",stage="ranking",version="1"}} {seconds / 2}
genre_serve_stage_seconds{{model="genre_recommend_batch",stage="ranking",version="1"}} 7
# HELP genre_serve_users Users answered
# TYPE genre_serve_users counter
genre_serve_users{{model="genre_recommend",version="1"}} {users}
# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="genre_recommend",version="1"}} {users}
"""

    before, after = model_counters(text(1.0, 100)), model_counters(text(1.5, 600))
    assert before["genre_serve_stage_seconds:retrieval"] == 1.0
    side = server_side(before, after)
    assert side["retrieval_ms_per_user"] == 1.0 and side["ranking_ms_per_user"] == 0.5
