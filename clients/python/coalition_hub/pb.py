"""The protobuf and gRPC classes generated at build time from proto/coalition/v1 (the wire edge).

Only the transport and byte-level modules use these; the rest of the package works with the
plain types of :mod:`coalition_hub.model`.
"""

from coalition_hub._proto.coalition.v1 import audit_pb2 as audit
from coalition_hub._proto.coalition.v1 import audit_pb2_grpc as audit_grpc
from coalition_hub._proto.coalition.v1 import hub_pb2 as hub
from coalition_hub._proto.coalition.v1 import hub_pb2_grpc as hub_grpc
from coalition_hub._proto.coalition.v1 import statement_pb2 as statement

__all__ = ["audit", "audit_grpc", "hub", "hub_grpc", "statement"]
