# Token authentication for consensus_settings: asked in addition to data.consensus_settings.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.consensus_settings

import rego.v1

default allow := false
