"""The suite's internal services; each talks to the others only over gRPC."""
