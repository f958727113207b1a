"""Container image names of the component roles.

Components are declared with the default images below; ``python -m pipelines compile
--image-registry R --image-tag T`` rewrites them in the compiled YAML. The default tag
is the package version, never ``latest``.
"""

from __future__ import annotations

import dataclasses

VERSION = "0.1.0"
DEFAULT_REGISTRY = "us-docker.pkg.dev/kfp-tf-gate/images"
ROLES = ("data", "trainer", "deploy")


@dataclasses.dataclass(frozen=True)
class Images:
    """Image URI per role: data steps, TensorFlow steps, deploy/monitor steps."""

    registry: str = DEFAULT_REGISTRY
    tag: str = VERSION

    def uri(self, role: str) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown image role {role!r}; expected one of {ROLES}")
        return f"{self.registry.rstrip('/')}/kfp-tf-gate-{role}:{self.tag}"

    @property
    def data(self) -> str:
        return self.uri("data")

    @property
    def trainer(self) -> str:
        return self.uri("trainer")

    @property
    def deploy(self) -> str:
        return self.uri("deploy")


IMAGES = Images()
