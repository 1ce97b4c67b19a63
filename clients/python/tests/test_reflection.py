"""Server reflection as Python's grpcio-reflection sees it (it speaks v1alpha only): the
coordinator lists its services and resolves JobService to its file, imports included."""

from __future__ import annotations

import grpc
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from cluster import Cluster


def test_reflection_lists_and_resolves_job_service(cluster: Cluster) -> None:
    target = cluster.url.split("://", 1)[1]
    with grpc.insecure_channel(target) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert "shoal.v1.JobService" in services, services
        assert "grpc.reflection.v1alpha.ServerReflection" in services, services

        pool = DescriptorPool(database)
        service = pool.FindServiceByName("shoal.v1.JobService")
        assert service.file.name == "job.proto"
        assert service.file.package == "shoal.v1"
        methods = {m.name for m in service.methods}
        assert {"SubmitJob", "GetJob", "ListJobs", "CancelJob", "WatchJob", "ListWorkers", "ListTrials"} <= methods
        # The file's imports resolve too: JobSpec lives in spec.proto.
        submit = service.methods_by_name["SubmitJob"]
        spec = submit.input_type.fields_by_name["spec"].message_type
        assert spec is not None and spec.full_name == "shoal.v1.JobSpec"
        assert pool.FindFileByName("spec.proto").package == "shoal.v1"
