"""Hook implementations of swqos-auth-jwt."""

from swqos_auth_jwt.api_tokens import ApiTokenAuthenticator, ApiTokenSettings
from swqos_auth_jwt.cli import add_commands
from swqos_auth_jwt.jwt_auth import JwtAuthenticator, JwtSettings
from swqos_core import hookimpl


@hookimpl
def swqos_register_authenticators(register):
    register("jwt", lambda settings, ctx: JwtAuthenticator(settings, logger=ctx.logger), JwtSettings,
             description="ES256 bearer JWT, nine-step verification, IP allowlist, brute-force guard")
    register("api_token", lambda settings, ctx: ApiTokenAuthenticator(settings, logger=ctx.logger), ApiTokenSettings,
             description="random API tokens stored as Argon2id hashes")


@hookimpl
def swqos_add_commands(subparsers):
    add_commands(subparsers)
