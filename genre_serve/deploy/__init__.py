"""Deployment beyond one process: configuration for the engines people run
genre_serve replicas with (HAProxy here; Kubernetes and the GPU image in deploy/)."""
