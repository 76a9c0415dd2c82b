"""Drives the control plane's gRPC Admin service from an independent gRPC
implementation (Python grpcio), with stubs generated from proto/ at run time.

Usage: grpc_admin_check.py <host:port> <proto dir> <admin token> <read token>
(the control plane runs with both tokens). Prints one `ok <what>` line per
check and exits non-zero on the first failure."""
import collections, importlib, os, sys, tempfile, threading

import grpc
from grpc_tools import protoc
import grpc_tools

target, proto_root, admin_token, read_token = sys.argv[1:5]
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


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata", "credentials",
                                                    "wait_for_ready", "compression")),
               grpc.ClientCallDetails):
    pass


class Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    """Sends `authorization: Bearer <token>` with every call."""

    def __init__(self, token):
        self.header = ("authorization", f"Bearer {token}")

    def _with_token(self, d):
        return _Details(d.method, d.timeout, list(d.metadata or []) + [self.header], d.credentials,
                        getattr(d, "wait_for_ready", None), getattr(d, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)


ch = grpc.insecure_channel(target)
admin = stubs.AdminStub(grpc.intercept_channel(ch, Bearer(admin_token)))
viewer = stubs.AdminStub(grpc.intercept_channel(ch, Bearer(read_token)))
anonymous = stubs.AdminStub(ch)

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

expect_code(grpc.StatusCode.FAILED_PRECONDITION,
            lambda: admin.Rollback(pb.RollbackRequest(version=created.version, if_version=created.version)),
            "Rollback stale if_version -> FAILED_PRECONDITION")

# Rules: one rule, its order, and "explain match".
got = admin.GetRule(pb.GetRuleRequest(name="py-rule"))
assert got.version == back.version and got.rule.match.path_prefix == "/py", got
assert got.rule.replace.source == "page", got
ok(f"GetRule py-rule version={got.version}")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.GetRule(pb.GetRuleRequest(name="no-such-rule")),
            "GetRule unknown -> NOT_FOUND")

moved = admin.UpdateRule(pb.UpdateRuleRequest(name="py-rule", rule=got.rule, position=1, if_version=back.version))
order = [r.name for r in admin.ListRules(pb.ListRulesRequest()).rules]
assert moved.changed and order.index("py-rule") == 1, order
ok(f"UpdateRule position=1 -> {order}")
expect_code(grpc.StatusCode.FAILED_PRECONDITION,
            lambda: admin.UpdateRule(pb.UpdateRuleRequest(name="py-rule", rule=got.rule, position=0,
                                                          if_version=back.version)),
            "UpdateRule stale if_version -> FAILED_PRECONDITION")
expect_code(grpc.StatusCode.INVALID_ARGUMENT,
            lambda: admin.UpdateRule(pb.UpdateRuleRequest(name="py-rule", rule=got.rule, position=2000000)),
            "UpdateRule position above the maximum -> INVALID_ARGUMENT")
admin.UpdateRule(pb.UpdateRuleRequest(name="py-rule", rule=got.rule, position=0))

why = admin.TestRule(pb.TestRuleRequest(name="marker", host="example.com", path="/py/x"))
assert not why.matched and why.failed_condition, why
assert why.winning_rule == "py-rule" and why.winning_position == 0, why
assert why.action.WhichOneof("kind") == "replace" and why.action.replace.source == "page", why
ok(f"TestRule marker on /py/x: not matched ({why.failed_condition}); winner {why.winning_rule} replace {why.action.replace.source}")
hit = admin.TestRule(pb.TestRuleRequest(name="marker", method="GET", host="example.com", path="/v"))
assert hit.matched and hit.winning_rule == "marker", hit
ok("TestRule marker on /v: matched and wins")
expect_code(grpc.StatusCode.NOT_FOUND,
            lambda: admin.TestRule(pb.TestRuleRequest(name="no-such-rule", host="h", path="/")),
            "TestRule unknown -> NOT_FOUND")
expect_code(grpc.StatusCode.INVALID_ARGUMENT,
            lambda: admin.TestRule(pb.TestRuleRequest(name="marker", host="h", path="no-slash")),
            "TestRule bad path -> INVALID_ARGUMENT")

# History entries carry the whole config of their version.
entry = admin.GetHistoryEntry(pb.GetHistoryEntryRequest(version=created.version))
assert entry.entry.version == created.version and entry.config.rules[0].name == "py-rule", entry.entry
ok(f"GetHistoryEntry version={entry.entry.version} actor={entry.entry.actor}")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.GetHistoryEntry(pb.GetHistoryEntryRequest(version=999999)),
            "GetHistoryEntry unknown -> NOT_FOUND")

# Backends CRUD.
listed = admin.ListBackends(pb.ListBackendsRequest())
assert [b.name for b in listed.backends] == ["echo"], listed
ok("ListBackends [echo]")
backend = cfg_pb.Backend(name="py-backend", servers=[cfg_pb.Server(address="127.0.0.1:9", weight=1)])
made = admin.CreateBackend(pb.CreateBackendRequest(backend=backend))
assert made.changed, made
ok(f"CreateBackend version={made.version}")
expect_code(grpc.StatusCode.ALREADY_EXISTS, lambda: admin.CreateBackend(pb.CreateBackendRequest(backend=backend)),
            "CreateBackend duplicate -> ALREADY_EXISTS")
expect_code(grpc.StatusCode.PERMISSION_DENIED,
            lambda: viewer.CreateBackend(pb.CreateBackendRequest(backend=cfg_pb.Backend(name="x"))),
            "CreateBackend with a read token -> PERMISSION_DENIED")
expect_code(grpc.StatusCode.INVALID_ARGUMENT,
            lambda: admin.CreateBackend(pb.CreateBackendRequest(backend=cfg_pb.Backend(name="empty"))),
            "CreateBackend without servers -> INVALID_ARGUMENT")
one = viewer.GetBackend(pb.GetBackendRequest(name="py-backend"))
assert one.version == made.version and one.backend.servers[0].address == "127.0.0.1:9", one
ok("GetBackend py-backend (read token)")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.GetBackend(pb.GetBackendRequest(name="nope")),
            "GetBackend unknown -> NOT_FOUND")
backend.servers.append(cfg_pb.Server(address="127.0.0.1:10", weight=2))
expect_code(grpc.StatusCode.FAILED_PRECONDITION,
            lambda: admin.UpdateBackend(pb.UpdateBackendRequest(name="py-backend", backend=backend,
                                                                if_version=made.version - 1)),
            "UpdateBackend stale if_version -> FAILED_PRECONDITION")
upd = admin.UpdateBackend(pb.UpdateBackendRequest(name="py-backend", backend=backend, if_version=made.version))
assert upd.changed and len(admin.GetBackend(pb.GetBackendRequest(name="py-backend")).backend.servers) == 2, upd
ok("UpdateBackend adds a server")
expect_code(grpc.StatusCode.NOT_FOUND,
            lambda: admin.UpdateBackend(pb.UpdateBackendRequest(name="nope", backend=backend)),
            "UpdateBackend unknown -> NOT_FOUND")
expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: admin.DeleteBackend(pb.DeleteBackendRequest(name="echo")),
            "DeleteBackend still used by a rule -> INVALID_ARGUMENT")
admin.DeleteBackend(pb.DeleteBackendRequest(name="py-backend"))
ok("DeleteBackend py-backend")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.DeleteBackend(pb.DeleteBackendRequest(name="py-backend")),
            "DeleteBackend unknown -> NOT_FOUND")

# Content sources CRUD; the list is REST's /api/content/sources view.
srcs = {s.name: s for s in admin.ListContentSources(pb.ListContentSourcesRequest()).sources}
assert srcs["marker"].kind == "inline" and srcs["page"].kind == "file", srcs
assert len(srcs["page"].sha256) == 64 and srcs["page"].size == len("page one\n"), srcs["page"]
ok(f"ListContentSources {sorted(srcs)} page sha256={srcs['page'].sha256[:12]}")
source = cfg_pb.ContentSource(name="py-src", inline="hello", content_type="text/plain")
admin.CreateContentSource(pb.CreateContentSourceRequest(source=source))
ok("CreateContentSource py-src")
expect_code(grpc.StatusCode.ALREADY_EXISTS,
            lambda: admin.CreateContentSource(pb.CreateContentSourceRequest(source=source)),
            "CreateContentSource duplicate -> ALREADY_EXISTS")
expect_code(grpc.StatusCode.INVALID_ARGUMENT,
            lambda: admin.CreateContentSource(pb.CreateContentSourceRequest(source=cfg_pb.ContentSource(name="empty"))),
            "CreateContentSource without content -> INVALID_ARGUMENT")
src = admin.GetContentSource(pb.GetContentSourceRequest(name="py-src"))
assert src.source.inline == "hello" and src.source.content_type == "text/plain", src
ok("GetContentSource py-src")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.GetContentSource(pb.GetContentSourceRequest(name="nope")),
            "GetContentSource unknown -> NOT_FOUND")
source.inline = "hello again"
admin.UpdateContentSource(pb.UpdateContentSourceRequest(name="py-src", source=source))
assert admin.GetContentSource(pb.GetContentSourceRequest(name="py-src")).source.inline == "hello again"
ok("UpdateContentSource py-src")
expect_code(grpc.StatusCode.NOT_FOUND,
            lambda: admin.UpdateContentSource(pb.UpdateContentSourceRequest(name="nope", source=source)),
            "UpdateContentSource unknown -> NOT_FOUND")
expect_code(grpc.StatusCode.INVALID_ARGUMENT,
            lambda: admin.DeleteContentSource(pb.DeleteContentSourceRequest(name="page")),
            "DeleteContentSource still used by a rule -> INVALID_ARGUMENT")
admin.DeleteContentSource(pb.DeleteContentSourceRequest(name="py-src"))
ok("DeleteContentSource py-src")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.DeleteContentSource(pb.DeleteContentSourceRequest(name="py-src")),
            "DeleteContentSource unknown -> NOT_FOUND")

# Caches: no data plane runs here, so no node confirms; the fields are there.
cleared = admin.ClearCache(pb.ClearCacheRequest())
assert not cleared.HasField("source") and cleared.nodes_total == 0 and cleared.nodes_confirmed == 0, cleared
assert len(cleared.nodes) == 0, cleared
ok(f"ClearCache all: nodes_total={cleared.nodes_total} nodes_confirmed={cleared.nodes_confirmed} nodes={list(cleared.nodes)}")
one_src = admin.ClearCache(pb.ClearCacheRequest(source="page"))
assert one_src.source == "page" and one_src.nodes_total == len(one_src.nodes), one_src
ok("ClearCache page")
expect_code(grpc.StatusCode.NOT_FOUND, lambda: admin.ClearCache(pb.ClearCacheRequest(source="nope")),
            "ClearCache unknown source -> NOT_FOUND")
expect_code(grpc.StatusCode.PERMISSION_DENIED, lambda: viewer.ClearCache(pb.ClearCacheRequest()),
            "ClearCache with a read token -> PERMISSION_DENIED")
stats = viewer.GetCacheStats(pb.GetCacheStatsRequest())
assert len(stats.nodes) == 0 and len(stats.totals) == 0, stats
ok("GetCacheStats (no node reported)")
expect_code(grpc.StatusCode.UNAUTHENTICATED, lambda: anonymous.GetCacheStats(pb.GetCacheStatsRequest()),
            "GetCacheStats without a token -> UNAUTHENTICATED")

# Status and health.
now = admin.GetConfig(pb.GetConfigRequest())
st = viewer.GetStatus(pb.GetStatusRequest())
assert st.version == now.version and st.hash == now.hash, st
assert st.counts.rules == len(now.config.rules) and st.counts.backends == 1 and st.counts.content_sources == 2, st
assert st.counts.nodes == 0 and st.traffic.reporting_nodes == 0 and not st.traffic.HasField("error_rate"), st
ok(f"GetStatus version={st.version} rules={st.counts.rules} uptime={st.uptime_seconds}s")
expect_code(grpc.StatusCode.UNAUTHENTICATED, lambda: anonymous.GetStatus(pb.GetStatusRequest()),
            "GetStatus without a token -> UNAUTHENTICATED")
hl = anonymous.GetHealth(pb.GetHealthRequest())
assert hl.status in ("ok", "degraded") and hl.storage.status == "ok" and hl.grpc.status == "ok", hl
assert hl.version == now.version and hl.nodes.total == 0, hl
ok(f"GetHealth {hl.status} without a token (public like /api/health)")
expect_code(grpc.StatusCode.UNAUTHENTICATED,
            lambda: stubs.AdminStub(grpc.intercept_channel(ch, Bearer("wrong-token"))).GetRule(
                pb.GetRuleRequest(name="py-rule")),
            "GetRule with an unknown token -> UNAUTHENTICATED")

# The audit log holds every write above, by the admin token's id.
audit = viewer.ListAudit(pb.ListAuditRequest(limit=100))
actions = [a.action for a in audit.entries]
for want in ("create_rule", "delete_rule", "rollback", "update_rule", "create_backend", "update_backend",
             "delete_backend", "create_content_source", "update_content_source", "delete_content_source"):
    assert want in actions, (want, actions)
assert all(a.actor == "ops" for a in audit.entries if a.action != "file_load"), audit
ids = [a.id for a in audit.entries]
assert ids == sorted(ids, reverse=True), ids
ok(f"ListAudit {len(actions)} entries by ops, newest {actions[0]}")
page = viewer.ListAudit(pb.ListAuditRequest(before=ids[0], limit=2))
assert [a.id for a in page.entries] == ids[1:3], page
ok("ListAudit before/limit pages backwards")
expect_code(grpc.StatusCode.INVALID_ARGUMENT, lambda: viewer.ListAudit(pb.ListAuditRequest(limit=0)),
            "ListAudit limit=0 -> INVALID_ARGUMENT")

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
