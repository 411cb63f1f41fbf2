"""ratelimit's part of the development stack: the ``gcra`` limiter with loose quotas
(``swqos_dev_defaults``; imported only by swqos-dev)."""

from __future__ import annotations

from swqos_dev.contribution import DevContribution
from swqos_dev.devstack import DevDir
from swqos_ratelimit.defaults import dev_notice, dev_settings


def dev_defaults(dev_dir: DevDir) -> DevContribution:
    return DevContribution(
        proxy={
            "swqos": {"plugins": ["ratelimit"]},
            "pipeline": {"rate_limit": ["gcra"]},
            "layers": {"rate_limit": {"gcra": dev_settings()}},
        },
        banner=dev_notice(),
    )
