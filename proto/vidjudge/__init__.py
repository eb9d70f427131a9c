"""vidjudge: judge videos with multimodal-LLM evaluators, at high throughput.

Import layout (one distribution, one import name):
  vidjudge.v1       generated gRPC/protobuf stubs of proto/vidjudge/v1/judge.proto
  vidjudge.errors   the error hierarchy shared by server and client
  vidjudge.client   Python clients (sync and asyncio) and the `vidjudge` CLI
  vidjudge.server   the serving pipeline (needs the `server` extra)
  vidjudge.export   bundle builders (needs the `server` extra)
"""

__version__ = "0.1.0"
