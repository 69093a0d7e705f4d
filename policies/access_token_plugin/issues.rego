# Token authentication for issues: asked in addition to data.issues.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.issues

import rego.v1

default allow := false
