"""A fake of NetMind's control plane for dedicated endpoints, as a real HTTP server on loopback.

It follows docs/providers.md: `GET /v1/inference-service/flavor`, `POST /v1/inference-service`,
`GET`/`PUT`/`DELETE /v1/inference-service/{id}`, Bearer auth, and the status lifecycle:
a service with instances is `initializing` for `ready_after_s`, then `available`; with a
flavor that does not exist, or more instances than the flavor has free, it ends
`unavailable` instead (deploy or scaling failed); at 0 instances it is `stopped`.
Resizing a service that is available keeps it available (its workers keep serving).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.server import BackgroundServer

TOKEN = "ctl-secret"
RTX_4090 = {"flavor_id": "rtx4090-x1", "display_name": "NVIDIA_GeForce_RTX_4090", "available_num": 4,
            "node_max_gpu": 8, "billing": {"usd_price_unit": 0.3}}


@dataclass
class FakeService:
    service_id: str
    name: str
    description: str
    flavor_id: str
    image_url: str
    command: str
    port: int
    gpu_num: int
    target: int
    status: str
    outcome: str = "available"  # what `initializing` turns into
    ready_at: float = 0.0

    def doc(self) -> dict[str, Any]:
        return {"service_id": self.service_id, "name": self.name, "description": self.description,
                "status": self.status, "payment_type": "usd",
                "resource_metadata": {"flavor_id": self.flavor_id, "scale_type": "manual",
                                      "target_instance_number": self.target},
                "deploy_metadata": {"image_url": self.image_url, "command": self.command, "port": self.port,
                                    "gpu_num": self.gpu_num}}


class FakeControlPlane:
    """Start and stop from any thread; `services`, `calls` and the settings may be read or changed while it runs.

    `envelope=True` wraps every answer in `{"code": 0, "data": ...}`, a shape the docs
    neither show nor rule out.
    """

    def __init__(self, token: str = TOKEN, flavors: list[dict[str, Any]] | None = None, ready_after_s: float = 0.3,
                 envelope: bool = False) -> None:
        self.token = token
        self.flavors = list(flavors if flavors is not None else [RTX_4090])
        self.ready_after_s = ready_after_s
        self.envelope = envelope
        self.services: dict[str, FakeService] = {}
        self.calls: list[tuple[str, str, Any]] = []  # (method, path, JSON body) of every request
        self.fail_next: list[int] = []  # statuses the next requests get, whatever they ask
        self._server = BackgroundServer(self._make_app, name="fake-netmind-control")

    # --- lifecycle and test controls ---------------------------------------------------------

    def start(self) -> FakeControlPlane:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def add_service(self, instances: int = 1, flavor_id: str = RTX_4090["flavor_id"], ready: bool = True) -> str:
        """A service made without a request (test set-up); `ready` skips its initializing phase."""
        service = self._new_service({"name": "test", "resource_metadata": {"flavor_id": flavor_id,
                                                                           "target_instance_number": instances},
                                     "deploy_metadata": {"image_url": "registry.example/vllm:latest", "port": 8000,
                                                         "gpu_num": 1}})
        if ready and service.status == "initializing":
            service.ready_at = 0.0
        return service.service_id

    def ready_in(self, service_id: str, seconds: float) -> None:
        """End an initializing service's deploy `seconds` from now (tests that must watch it initialize)."""
        self.services[service_id].ready_at = time.monotonic() + seconds

    def status(self, service_id: str) -> str:
        return self._current(self.services[service_id]).status

    def puts(self, service_id: str | None = None) -> list[Any]:
        """Bodies of the PUTs received (for one service, or all)."""
        return [body for method, path, body in self.calls
                if method == "PUT" and (service_id is None or path.endswith("/" + service_id))]

    # --- the HTTP side (runs on the server's own loop) ------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_authorize])
        app.router.add_get("/v1/inference-service/flavor", self._list_flavors)
        app.router.add_post("/v1/inference-service", self._create)
        app.router.add_get("/v1/inference-service/{service_id}", self._get)
        app.router.add_put("/v1/inference-service/{service_id}", self._update)
        app.router.add_delete("/v1/inference-service/{service_id}", self._delete)
        return app

    @web.middleware
    async def _record_and_authorize(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        self.calls.append((request.method, request.path, body))
        if self.fail_next:
            status = self.fail_next.pop(0)
            return self._error(status, f"injected failure {status}")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._error(401, "invalid or missing API token")
        return await handler(request)

    async def _list_flavors(self, request: web.Request) -> web.Response:
        return self._answer(self.flavors)

    async def _create(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read() or b"null")
        problem = _create_problem(body)
        if problem:
            return self._error(400, problem)
        service = self._new_service(body)
        return self._answer({"service_id": service.service_id, "status": service.status})

    async def _get(self, request: web.Request) -> web.Response:
        service = self.services.get(request.match_info["service_id"])
        if service is None:
            return self._error(404, "inference service not found")
        return self._answer(self._current(service).doc())

    async def _update(self, request: web.Request) -> web.Response:
        service = self.services.get(request.match_info["service_id"])
        if service is None:
            return self._error(404, "inference service not found")
        body = orjson.loads(await request.read() or b"null")
        target = (body or {}).get("resource_metadata", {}).get("target_instance_number")
        if isinstance(target, bool) or not isinstance(target, int) or target < 0:
            return self._error(400, "resource_metadata.target_instance_number must be a whole number >= 0")
        service = self._current(service)
        was_serving = service.status == "available" and service.target > 0
        service.target = target
        if target == 0:
            service.status = "stopped"
        elif not (was_serving and self._fits(service)):
            self._deploy(service)
        return self._answer(service.doc())

    async def _delete(self, request: web.Request) -> web.Response:
        if self.services.pop(request.match_info["service_id"], None) is None:
            return self._error(404, "inference service not found")
        return self._answer({"message": "deleted"})

    # --- the lifecycle --------------------------------------------------------------------------

    def _new_service(self, body: dict[str, Any]) -> FakeService:
        resource, deploy = body["resource_metadata"], body["deploy_metadata"]
        service = FakeService(service_id=uuid.uuid4().hex[:16], name=body["name"],
                              description=body.get("description", ""), flavor_id=resource["flavor_id"],
                              image_url=deploy["image_url"], command=deploy.get("command", ""),
                              port=deploy.get("port", 8000), gpu_num=deploy.get("gpu_num", 1),
                              target=resource["target_instance_number"], status="stopped")
        if service.target > 0:
            self._deploy(service)
        self.services[service.service_id] = service
        return service

    def _deploy(self, service: FakeService) -> None:
        service.status = "initializing"
        service.outcome = "available" if self._fits(service) else "unavailable"
        service.ready_at = time.monotonic() + self.ready_after_s

    def _fits(self, service: FakeService) -> bool:
        flavor = next((f for f in self.flavors if f["flavor_id"] == service.flavor_id), None)
        return flavor is not None and service.target <= flavor["available_num"]

    def _current(self, service: FakeService) -> FakeService:
        if service.status == "initializing" and time.monotonic() >= service.ready_at:
            service.status = service.outcome
        return service

    def _answer(self, doc: Any) -> web.Response:
        if self.envelope:
            doc = {"code": 0, "message": "success", "data": doc}
        return web.Response(body=orjson.dumps(doc), content_type="application/json")

    def _error(self, status: int, message: str) -> web.Response:
        doc: dict[str, Any] = {"message": message}
        if self.envelope:
            doc = {"code": status, "message": message, "data": None}
        return web.Response(status=status, body=orjson.dumps(doc), content_type="application/json")


def _create_problem(body: Any) -> str | None:
    """What a create request lacks, in the words an API would use; None when it is whole."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    resource, deploy = body.get("resource_metadata"), body.get("deploy_metadata")
    if not body.get("name"):
        return "name is required"
    if body.get("payment_type") != "usd":
        return "payment_type must be 'usd'"
    if not isinstance(resource, dict) or not resource.get("flavor_id"):
        return "resource_metadata.flavor_id is required"
    if resource.get("scale_type") != "manual":
        return "resource_metadata.scale_type must be 'manual'"
    target = resource.get("target_instance_number")
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        return "resource_metadata.target_instance_number must be a whole number >= 0"
    if not isinstance(deploy, dict) or not deploy.get("image_url"):
        return "deploy_metadata.image_url is required"
    if not isinstance(deploy.get("port"), int) or not isinstance(deploy.get("gpu_num"), int):
        return "deploy_metadata.port and deploy_metadata.gpu_num must be whole numbers"
    return None
