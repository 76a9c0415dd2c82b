"""Drives the control plane's gRPC Admin service from an independent gRPC
implementation (Python grpcio), with stubs generated from proto/ at run time.

Usage: grpc_admin_check.py <host:port> <proto dir>. Prints one `ok <what>`
line per check and exits non-zero on the first failure."""
import importlib, os, sys, tempfile, threading

import grpc
from grpc_tools import protoc
import grpc_tools

target, proto_root = sys.argv[1], sys.argv[2]
out = tempfile.mkdtemp(prefix="sy-grpc-")
wkt = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
protos = [os.path.join("switchyard", "v1", f) for f in ("config.proto", "admin.proto")]
rc = protoc.main(["protoc", f"-I{proto_root}", f"-I{wkt}", f"--python_out={out}", f"--grpc_python_out={out}", *protos])
if rc != 0:
    sys.exit(f"protoc failed: {rc}")
sys.path.insert(0, out)
pb = importlib.import_module("switchyard.v1.admin_pb2")
cfg_pb = importlib.import_module("switchyard.v1.config_pb2")
stubs = importlib.import_module("switchyard.v1.admin_pb2_grpc")


def ok(what):
    print("ok", what, flush=True)


def expect_code(code, fn, what):
    try:
        fn()
    except grpc.RpcError as e:
        if e.code() != code:
            sys.exit(f"{what}: got {e.code()} ({e.details()}), want {code}")
        ok(what)
        return
    sys.exit(f"{what}: succeeded, want {code}")


ch = grpc.insecure_channel(target)
admin = stubs.AdminStub(ch)

# WatchEvents first, so the write below produces an event it sees.
events, ready = [], threading.Event()
stream = admin.WatchEvents(pb.WatchEventsRequest())


def watch():
    try:
        for ev in stream:
            events.append(ev)
            ready.set()
    except grpc.RpcError:
        pass


threading.Thread(target=watch, daemon=True).start()

cur = admin.GetConfig(pb.GetConfigRequest())
assert cur.version >= 1 and cur.config.rules, cur
ok(f"GetConfig version={cur.version} rules={len(cur.config.rules)}")

expect_code(grpc.StatusCode.FAILED_PRECONDITION,
            lambda: admin.PutConfig(pb.PutConfigRequest(config=cur.config, if_version=cur.version + 1000)),
            "PutConfig stale if_version -> FAILED_PRECONDITION")
same = admin.PutConfig(pb.PutConfigRequest(config=cur.config, if_version=cur.version))
assert not same.changed and same.version == cur.version, same
ok("PutConfig identical -> unchanged")

rule = cfg_pb.Rule(name="py-rule", match=cfg_pb.RuleMatch(path_prefix="/py"),
                   replace=cfg_pb.ReplaceAction(source="page", status=200))
created = admin.CreateRule(pb.CreateRuleRequest(rule=rule, position=0))
assert created.changed and created.version == cur.version + 1, created
ok(f"CreateRule version={created.version}")
expect_code(grpc.StatusCode.ALREADY_EXISTS, lambda: admin.CreateRule(pb.CreateRuleRequest(rule=rule)),
            "CreateRule duplicate -> ALREADY_EXISTS")

rules = admin.ListRules(pb.ListRulesRequest())
assert rules.rules[0].name == "py-rule" and rules.version == created.version, rules
ok("ListRules shows it first")

expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.DeleteRule(pb.DeleteRuleRequest(name="no-such-rule")),
            "DeleteRule unknown -> NOT_FOUND")
deleted = admin.DeleteRule(pb.DeleteRuleRequest(name="py-rule", if_version=created.version))
assert deleted.version == created.version + 1, deleted
ok("DeleteRule")

nodes = admin.ListNodes(pb.ListNodesRequest())
assert nodes.desired_version == deleted.version, nodes
ok(f"ListNodes desired_version={nodes.desired_version}")

hist = admin.ListHistory(pb.ListHistoryRequest())
versions = [e.version for e in hist.entries]
assert created.version in versions and deleted.version in versions, versions
ok(f"ListHistory {versions}")

back = admin.Rollback(pb.RollbackRequest(version=created.version))
assert back.version == deleted.version + 1, back
again = admin.ListRules(pb.ListRulesRequest())
assert again.rules[0].name == "py-rule", again
ok("Rollback restores the rule as a new version")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.Rollback(pb.RollbackRequest(version=999999)),
            "Rollback unknown -> NOT_FOUND")

if not ready.wait(10):
    sys.exit("WatchEvents: no event after writes")
ok(f"WatchEvents received {events[0].type} seq={events[0].seq}")
stream.cancel()

# Health and reflection: stubs from minimal copies of the standard protos
# (the wire names come from the proto package, so local file names are fine).
with open(os.path.join(out, "sy_health.proto"), "w") as f:
    f.write('syntax = "proto3"; package grpc.health.v1;'
            ' message HealthCheckRequest { string service = 1; }'
            ' message HealthCheckResponse { enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; } ServingStatus status = 1; }'
            ' service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }')
with open(os.path.join(out, "sy_reflection.proto"), "w") as f:
    f.write('syntax = "proto3"; package grpc.reflection.v1;'
            ' message ServerReflectionRequest { string host = 1; oneof message_request { string list_services = 7; } }'
            ' message ServiceResponse { string name = 1; }'
            ' message ListServiceResponse { repeated ServiceResponse service = 1; }'
            ' message ServerReflectionResponse { string valid_host = 1; ServerReflectionRequest original_request = 2;'
            ' oneof message_response { ListServiceResponse list_services_response = 6; } }'
            ' service ServerReflection { rpc ServerReflectionInfo(stream ServerReflectionRequest) returns (stream ServerReflectionResponse); }')
rc = protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}",
                  "sy_health.proto", "sy_reflection.proto"])
if rc != 0:
    sys.exit(f"protoc (health/reflection) failed: {rc}")
h_pb = importlib.import_module("sy_health_pb2")
h_grpc = importlib.import_module("sy_health_pb2_grpc")
status = h_grpc.HealthStub(ch).Check(h_pb.HealthCheckRequest(service=""))
assert status.status == h_pb.HealthCheckResponse.SERVING, status
ok("health SERVING")

r_pb = importlib.import_module("sy_reflection_pb2")
r_grpc = importlib.import_module("sy_reflection_pb2_grpc")
names = []
for resp in r_grpc.ServerReflectionStub(ch).ServerReflectionInfo(iter([r_pb.ServerReflectionRequest(list_services="")])):
    names = [s.name for s in resp.list_services_response.service]
    break
assert "switchyard.v1.Admin" in names, names
ok("reflection lists " + " ".join(sorted(names)))
print("grpc admin check passed", flush=True)
