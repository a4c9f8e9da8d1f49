// ESO's toYaml and fromYaml (runtime/template/v2/yaml.go) on Debian's
// sigs.k8s.io/yaml (golang-k8s-sigs-yaml-dev, over gopkg.in/yaml.v2).
package main

import (
	"strings"

	"sigs.k8s.io/yaml"
)

// toYAML: sigs.k8s.io/yaml's Marshal, the last newline trimmed; "" when it
// fails.
func toYAML(v any) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

// fromYAML: the document as a map; a failure's message under "Error".
func fromYAML(s string) map[string]any {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}
