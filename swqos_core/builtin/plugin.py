"""Hook implementations of the core's built-in layers."""

from __future__ import annotations

from swqos_core import hookimpl
from swqos_core.builtin.ed25519 import Ed25519Signer
from swqos_core.builtin.keyfile import FileKeyProvider, FileKeySettings
from swqos_core.builtin.limits import LimitsSettings, LimitsValidator
from swqos_core.builtin.peer import PeerResolver
from swqos_core.store import MemorySettings, MemoryStateStore


@hookimpl
def swqos_register_client_ip_resolvers(register):
    register("peer", lambda settings, ctx: PeerResolver(), description="the TCP peer address (no CDN)")


@hookimpl
def swqos_register_request_validators(register):
    register("limits", lambda settings, ctx: LimitsValidator(settings), LimitsSettings,
             description="payload present and small, deadline not passed")


@hookimpl
def swqos_register_key_providers(register):
    register("file", FileKeyProvider, FileKeySettings, description="Solana keypair file on disk (development)")


@hookimpl
def swqos_register_signers(register):
    register("ed25519", lambda settings, ctx: Ed25519Signer(), description="Ed25519 with PyNaCl (libsodium)")



@hookimpl
def swqos_check_config(app, strict):
    return [problem for provider in app.all("key_provider") if isinstance(provider, FileKeyProvider)
            for problem in provider.check()]


@hookimpl
def swqos_register_state_stores(register):
    register("memory", lambda settings, ctx: MemoryStateStore(settings), MemorySettings,
             description="in-process state: nothing survives a restart or is shared (swqos-state: sqlite, redis)")
