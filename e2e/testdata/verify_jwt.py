"""Verify an MCIAS token offline with PyJWT, from /.well-known/jwks.json alone.

Usage: verify_jwt.py JWKS_URL CA_FILE ISSUER < token
Prints the verified claims as JSON and exits 0, or prints why and exits 1.
This is what a service written in Python would do: no MCIAS code, no call
to the server other than fetching the published key set.
"""
import json
import ssl
import sys
import urllib.request

import jwt


def main() -> int:
    jwks_url, ca_file, issuer = sys.argv[1:4]
    token = sys.stdin.read().strip()
    ctx = ssl.create_default_context(cafile=ca_file)
    with urllib.request.urlopen(jwks_url, context=ctx, timeout=30) as resp:
        jwks = json.load(resp)
    keys = {k.key_id: k for k in jwt.PyJWKSet.from_dict(jwks).keys}
    kid = jwt.get_unverified_header(token).get("kid")
    if kid not in keys:
        print(f"kid {kid!r} is not in the JWKS ({sorted(keys)})")
        return 1
    try:
        claims = jwt.decode(
            token,
            keys[kid],
            algorithms=["EdDSA"],  # pinned: never taken from the token
            issuer=issuer,
            leeway=30,
            options={"require": ["exp", "iat", "nbf", "iss", "sub", "jti"]},
        )
    except jwt.InvalidTokenError as e:
        print(f"invalid: {type(e).__name__}: {e}")
        return 1
    print(json.dumps({"kid": kid, "claims": claims}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
