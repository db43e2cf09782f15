"""The gateway: the suite's only public door (gRPC and HTTP)."""
