"""`ostap serve`: the recommendation API and its Redis versions (see jobs.serving.serving).

    ostap serve [--host 127.0.0.1] [--port 8090] [--redis URL] [--log PATH]   run the HTTP service
    ostap serve load --ds D [--redis URL] [--experiment NAME]                 publish ds's lists
    ostap serve rollback [--redis URL]                                        back to the previous version
    ostap serve status [--redis URL]                                          current version, kept ones, history

The Redis URL defaults to $OSTAP_REDIS_URL. The default port is 8090, not 8080, because the
embedded Airflow's API server listens on 8080. The service is werkzeug's threaded server with
HTTP/1.1 keep-alive (waitress is used instead when it is installed); request lines are not
printed, every answer goes to the JSON-lines answer log (--log, default $OSTAP_SERVE_LOG or
./.serve/answers.jsonl).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from jobs.core import abtest, answer_log, settings
from jobs.core.errors import OstapError
from jobs.core.run import RunContext
from jobs.serving import api, serving

HELP = "serve recommendations over HTTP from Redis; load, roll back and inspect served versions"

ACTIONS = ("run", "load", "rollback", "status")
DEFAULT_PORT = 8090

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=ACTIONS, default="run",
                        help="run (default) the service, load a date, rollback, or status")
    parser.add_argument("--redis", metavar="URL", help="Redis URL (default: $OSTAP_REDIS_URL)")
    parser.add_argument("--host", default="127.0.0.1", help="run: interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=settings.SERVE_PORT.get_int(),
                        help=f"run: TCP port (default $OSTAP_SERVE_PORT or {settings.SERVE_PORT.default})")
    parser.add_argument("--log", metavar="PATH", help="run: JSON-lines answer log (default $OSTAP_SERVE_LOG or ./.serve/answers.jsonl)")
    parser.add_argument("--max-k", type=int, default=serving.MAX_K, help="run: largest k accepted (default 100)")
    parser.add_argument("--ds", metavar="YYYY-MM-DD", help="load: the published date to serve")
    parser.add_argument("--experiment", metavar="NAME",
                        help="load: the A/B experiment of the lists, as in `ostap recommend` (default: the "
                             "current one of $OSTAP_EXPERIMENTS)")
    parser.add_argument("--make-current", action="store_true",
                        help="load: serve --ds even when it is older than the current version's date "
                        "(by default a backfill of past dates leaves live traffic alone)")
    parser.add_argument("--loaded-at", metavar="ISO", help="load: timestamp recorded in the version history "
                        "(metadata only; default now)")


def run(args, ctx: RunContext) -> int:
    action = args.action
    if action == "load":
        if not args.ds:
            raise OstapError("ostap serve load needs --ds YYYY-MM-DD")
        version = serving.load_version(ctx, args.redis, loaded_at=args.loaded_at,
                                       experiment=abtest.experiment(args.experiment),
                                       make_current=args.make_current)
        if version is None:
            current = serving.status(args.redis, history=1)
            print(json.dumps({"version": None, "ds": ctx.ds, "current": current["current"],
                              "note": "older than the current version's date: not loaded (--make-current serves it)"}))
            return 0
        print(json.dumps({"version": version, "ds": ctx.ds}))
        return 0
    if action == "rollback":
        print(json.dumps({"version": serving.rollback(args.redis)}))
        return 0
    if action == "status":
        print(json.dumps(serving.status(args.redis), indent=2))
        return 0
    return serve_forever(serving.redis_url_or_default(args.redis), args.host, args.port,
                         Path(args.log) if args.log else answer_log.default_path(), args.max_k)


def serve_forever(redis_url: str, host: str, port: int, log_path: Path, max_k: int = serving.MAX_K) -> int:
    app = api.create_app(redis_url, log_path, max_k=max_k)
    print(f"ostap serve: http://{host}:{port}  redis {serving.safe_url(redis_url)}  answers -> {log_path}",
          flush=True)
    try:
        import waitress
    except ImportError:
        waitress = None
    if waitress is not None:
        waitress.serve(app, host=host, port=port, threads=8, _quiet=True)
        return 0
    from werkzeug.serving import WSGIRequestHandler, make_server

    class QuietKeepAliveHandler(WSGIRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: a CRM client reuses its connection

        def log_request(self, *args, **kwargs):  # the answer log already has every request
            pass

    try:
        server = make_server(host, port, app, threaded=True, request_handler=QuietKeepAliveHandler)
    except OSError as exc:
        raise OstapError(f"cannot listen on {host}:{port}: {exc.strerror}; pick another --port") from exc
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        app.config["ANSWER_LOG"].close()
    return 0

