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
