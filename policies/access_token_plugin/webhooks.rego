# Token authentication for webhooks: asked in addition to data.webhooks.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.webhooks

import rego.v1

default allow := false
