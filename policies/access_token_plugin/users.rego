# Token authentication for users: asked in addition to data.users.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.users

import rego.v1

default allow := false
