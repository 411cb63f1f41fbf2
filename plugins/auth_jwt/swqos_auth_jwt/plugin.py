"""Hook implementations of swqos-auth-jwt."""

from swqos_auth_jwt.admin_ops import operations_for
from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator, ApiTokenSettings
from swqos_auth_jwt.checks import config_problems
from swqos_auth_jwt.cli import add_commands
from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtSettings
from swqos_auth_jwt.metrics import collector_for
from swqos_core import hookimpl


@hookimpl
def swqos_register_authenticators(register):
    register("jwt", lambda settings, ctx: JwtAuthenticator(settings, logger=ctx.logger, store=ctx.store), JwtSettings,
             description="ES256 bearer JWT, nine-step verification, IP allowlist, brute-force guard")
    register("api_token", lambda settings, ctx: ApiTokenAuthenticator(settings, logger=ctx.logger, store=ctx.store),
             ApiTokenSettings,
             description="random API tokens stored as Argon2id hashes")


@hookimpl
def swqos_add_commands(subparsers):
    add_commands(subparsers)


@hookimpl(optionalhook=True)  # a swqos-dev hook: absent where swqos-dev is not installed
def swqos_dev_defaults(dev_dir):
    from swqos_auth_jwt.dev import dev_defaults  # imports swqos_dev, which is the only caller

    return dev_defaults(dev_dir)


@hookimpl
def swqos_register_admin_operations(app, register):
    """revoke-trader, restore-trader, revoke-token, restore-token, set-allowlist (for the jwt layers)."""
    for operation in operations_for(app):
        register(operation)


@hookimpl
def swqos_register_metrics(app, register):
    """Credential caches and brute-force guards of the jwt and api_token layers."""
    collector = collector_for(app)
    if collector is not None:
        register(collector)


@hookimpl
def swqos_check_config(app, strict):
    """When strict: a development issuer (the dev stack's keys) is never trusted by a public proxy."""
    return config_problems(app, strict)
