# Token authentication for memberships: asked in addition to data.memberships.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.memberships

import rego.v1

default allow := false
