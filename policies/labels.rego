# labels: no decision table has been written for this package yet, so every
# request is denied (a definite false, never undefined; policies/README.md,
# "Packages outside the tables").
package labels

import rego.v1

default allow := false
