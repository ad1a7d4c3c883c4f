#!/usr/bin/env python3
"""A generic gRPC client's view of a running core: reflection lists the services (v1alpha, as
grpcio-reflection speaks it) and health answers SERVING. Usage: grpc_generic_client.py HOST:PORT"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
channel = grpc.insecure_channel(target)
grpc.channel_ready_future(channel).result(timeout=10)

services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
print("services:", ", ".join(sorted(services)))
expected = {"licensing.v1.ClientService", "licensing.v1.DeveloperService", "grpc.health.v1.Health"}
missing = expected - services
if missing:
    sys.exit(f"missing services: {sorted(missing)}")

health = health_pb2_grpc.HealthStub(channel)
for name in ["", "licensing.v1.ClientService", "licensing.v1.DeveloperService"]:
    status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
    print(f"health {name or '(server)'}: {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}")
    if status != health_pb2.HealthCheckResponse.SERVING:
        sys.exit(1)
print("generic client: ok")
