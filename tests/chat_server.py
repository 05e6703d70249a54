"""A fake OpenAI-compatible chat-completions endpoint on 127.0.0.1, shared by the tests of the LLM clients."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable
from typing import Any

# respond(path, body, number) -> (status, extra headers, payload: a dict sent as JSON, or raw text); a status of
# DROP closes the connection without a reply, and a `Cut` payload is cut short mid-body.
Respond = Callable[[str, dict, int], tuple[int | None, dict[str, str], Any]]
DROP = None


class Cut(str):
  """A payload whose headers announce all of it but of which only the first half is sent before the connection
  closes (the client reads an incomplete body)."""


class ChatServer:
  """Records each request's body and headers (under `lock`) and answers with `respond`, which a test may
  replace; `number` counts requests from 1. A client that gives up mid-reply (a timeout test) is ignored."""

  def __init__(self, respond: Respond):
    self.requests: list[dict] = []
    self.headers: list[dict] = []
    self.lock = threading.Lock()
    self.respond = respond
    server = self

    class Handler(http.server.BaseHTTPRequestHandler):
      def do_POST(self):  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with server.lock:
          server.requests.append(body)
          server.headers.append(dict(self.headers))
          number = len(server.requests)
        status, headers, payload = server.respond(self.path, body, number)
        if status is DROP:
          self.close_connection = True
          return
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
          self.send_response(status)
          for key, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(key, value)
          self.send_header("Content-Length", str(len(data)))
          self.end_headers()
          if isinstance(payload, Cut):
            self.wfile.write(data[:len(data) // 2])
            self.close_connection = True
          else:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
          pass

      def log_message(self, *args):
        pass

    self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.httpd.daemon_threads = True
    self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
    self.thread.start()
    self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

  @staticmethod
  def quoted(body: dict) -> str:
    """The text a prompt quotes between its "<<<" and ">>>" lines (the segment, trace or sample asked about)."""
    user = [m["content"] for m in body["messages"] if m["role"] == "user"][0]
    return user.split("<<<\n", 1)[1].rsplit("\n>>>", 1)[0]

  def close(self):
    self.httpd.shutdown()
    self.httpd.server_close()


def completion(content: str) -> dict:
  """A chat-completions reply whose one choice says `content`."""
  return {"id": "x", "object": "chat.completion",
          "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}
