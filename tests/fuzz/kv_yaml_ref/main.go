// kv_yaml_ref: how ESO reads the output of a `templateAs: KeysAndValues`
// template (runtime/template/v2: yaml.Unmarshal into map[string]string with
// sigs.k8s.io/yaml, Debian's golang-k8s-sigs-yaml-dev). The reference for
// kv_yaml_diff.cpp.
//
// Input: one document per line, hex-encoded. Output: one line per document:
// "E" when Unmarshal fails, else the entries sorted by key, each
// "<hex key>=<hex value>" ("-" for empty), separated by spaces ("{}" when
// there are none).
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"
)

func show(s string) string {
	if s == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(s))
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		in, err := hex.DecodeString(sc.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, "kv_yaml_ref: a line is not hex")
			os.Exit(2)
		}
		src := make(map[string]string)
		if err := yaml.Unmarshal(in, &src); err != nil {
			fmt.Fprintln(w, "E")
			continue
		}
		keys := make([]string, 0, len(src))
		for k := range src {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, show(k)+"="+show(src[k]))
		}
		if len(parts) == 0 {
			fmt.Fprintln(w, "{}")
			continue
		}
		fmt.Fprintln(w, strings.Join(parts, " "))
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "kv_yaml_ref:", err)
		os.Exit(2)
	}
}
