"""The ``shoal.v1`` protocol: ``job_pb2`` (JobService and its messages), ``spec_pb2`` (JobSpec),
``worker_pb2``, ``param_server_pb2`` and their ``*_pb2_grpc`` stubs.

These modules are generated from the repository's ``proto/*.proto`` when the package is built
(see ``setup.py``); none of them is kept in the source tree.
"""
