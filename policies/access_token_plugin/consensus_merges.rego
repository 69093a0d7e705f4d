# Token authentication for consensus_merges: asked in addition to data.consensus_merges.allow
# when the request is authenticated with an access token (input.auth.token).
# No table covers tokens yet, so every request is denied (policies/README.md,
# "Packages outside the tables").
package access_token_plugin.consensus_merges

import rego.v1

default allow := false
