# Token authentication for lambda: asked in addition to data.lambda.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.lambda

import rego.v1

default allow := false
