"""Hook implementations of swqos-kms-nitro."""

from swqos_core import hookimpl
from swqos_kms_nitro.cli import add_commands
from swqos_kms_nitro.provider import (
    NitroFakeKeySettings,
    NitroKeyProvider,
    NitroKeySettings,
    make_nitro,
    make_nitro_fake,
)


@hookimpl
def swqos_register_key_providers(register):
    register("nitro", make_nitro, NitroKeySettings,
             description="Nitro Enclave: NSM attestation, KMS Decrypt with Recipient, key checked against expected")
    register("nitro_fake", make_nitro_fake, NitroFakeKeySettings, insecure=True,
             description="the nitro provider on a FAKE NSM and test root (tests and `swqos kms dev` only)")


@hookimpl
def swqos_add_commands(subparsers):
    add_commands(subparsers)


@hookimpl
def swqos_check_config(app, strict):
    """The sealed key is present, the KMS key id and region are well formed."""
    return [p for name, layer in app.layers.get("key_provider", []) if isinstance(layer, NitroKeyProvider)
            for p in layer.check(f"[layers.key_provider.{name}]")]
