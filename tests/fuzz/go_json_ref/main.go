// go_json_ref: how ESO's Vault and AWS providers turn a remote JSON value into
// Secret bytes (providers/v1/vault/client_get.go, providers/v1/aws/
// secretsmanager/secretsmanager.go, runtime/esutils GetByteValue), on Go's
// encoding/json and gjson (Debian's golang-github-tidwall-gjson-dev). The
// reference for go_json_diff.cpp.
//
// Input: one request per line, "<op> <hex property> <hex document>" ("-" for
// an empty field). Ops:
//   vault_whole     Go's json.Marshal of the document decoded with UseNumber
//   vault_property  ESO's Vault getSecretValue(data, property)
//   vault_extract   ESO's Vault GetSecretMap (Marshal, then Unmarshal into map[string]any)
//   aws_property    ESO's AWS GetSecret with a property (escapeDotsIfRequired + gjson)
//   aws_extract     ESO's AWS GetSecretMap (map[string]json.RawMessage), also
//                   GCP's and Azure's
//   azure_property  ESO's Azure Key Vault getProperty (the path, then a key with dots)
//   merge           ESO's RewriteMerge (runtime/esutils) of the document, a JSON
//                   object of hex-encoded values (the map), under the options in
//                   the property: {"into","priority","ignoreNotFound",
//                   "ignoreConflicts","json"}; a conflict error is "C" and the
//                   conflicting keys sorted (Go's map order varies), in hex
//                   joined by spaces
// Output: one line per request: "E" (an error, or a document that is not
// valid JSON: rootseal refuses those, gjson reads them leniently), "N" (the
// property does not exist), the value in hex ("-": empty), or for the
// extract ops the entries sorted by key, "<hex key>=<hex value>" separated by
// spaces ("{}" when none).
//
// Debian's Go (1.19) writes \b and \f as \u0008 and \u000c; ESO is built with
// Go 1.22 or later, which writes \b and \f: marshal() does as the latter.
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/tidwall/gjson"
)

func show(b []byte) string {
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

func field(s string) []byte {
	if s == "-" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go_json_ref: a field is not hex")
		os.Exit(2)
	}
	return b
}

// json.Marshal as Go 1.22+ writes it.
func marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return fixEscapes(b), nil
}

// \u0008 and \u000c as Go 1.22 and later write them: \b and \f.
func fixEscapes(b []byte) []byte {
	var out bytes.Buffer
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			if b[i+1] == 'u' && i+5 < len(b) {
				switch string(b[i+2 : i+6]) {
				case "0008":
					out.WriteString(`\b`)
					i += 5
					continue
				case "000c":
					out.WriteString(`\f`)
					i += 5
					continue
				}
			}
			out.WriteByte(b[i])
			out.WriteByte(b[i+1])
			i++
			continue
		}
		out.WriteByte(b[i])
	}
	return out.Bytes()
}

// esutils.GetByteValue.
func byteValue(v any) ([]byte, error) {
	switch t := v.(type) {
	case string:
		return []byte(t), nil
	case map[string]any:
		return marshal(t)
	case []any:
		return marshal(t)
	case float64:
		return []byte(strconv.FormatFloat(t, 'f', -1, 64)), nil
	case json.Number:
		return []byte(t.String()), nil
	case bool:
		return []byte(strconv.FormatBool(t)), nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("unexpected type %T", v)
}

func useNumber(doc []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(doc))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

func entries(m map[string][]byte) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, show([]byte(k))+"="+show(m[k]))
	}
	if len(parts) == 0 {
		return "{}"
	}
	return strings.Join(parts, " ")
}

func answer(op string, property string, doc []byte) string {
	if !json.Valid(doc) {
		return "E"
	}
	switch op {
	case "vault_whole":
		m, err := useNumber(doc)
		if err != nil || m == nil {
			return "E"
		}
		b, err := marshal(m)
		if err != nil {
			return "E"
		}
		return show(b)
	case "vault_property":
		m, err := useNumber(doc)
		if err != nil || m == nil {
			return "E"
		}
		if _, ok := m[property]; ok {
			b, err := byteValue(m[property])
			if err != nil {
				return "E"
			}
			return show(b)
		}
		whole, err := marshal(m)
		if err != nil {
			return "E"
		}
		val := gjson.Get(string(whole), property)
		if !val.Exists() {
			return "N"
		}
		return show([]byte(val.String()))
	case "vault_extract":
		m, err := useNumber(doc)
		if err != nil || m == nil {
			return "E"
		}
		whole, err := marshal(m)
		if err != nil {
			return "E"
		}
		var data map[string]any
		if err := json.Unmarshal(whole, &data); err != nil {
			return "E"
		}
		out := make(map[string][]byte, len(data))
		for k, v := range data {
			b, err := byteValue(v)
			if err != nil {
				return "E"
			}
			out[k] = b
		}
		return entries(out)
	case "aws_property":
		payload := string(doc)
		ref := property
		if strings.Contains(property, ".") {
			ref = strings.ReplaceAll(property, ".", "\\.")
			if !gjson.Get(payload, ref).Exists() {
				ref = property
			}
		}
		val := gjson.Get(payload, ref)
		if !val.Exists() {
			return "N"
		}
		return show([]byte(val.String()))
	case "azure_property":
		val := gjson.Get(string(doc), property)
		if !val.Exists() && strings.Contains(property, ".") {
			val = gjson.Get(string(doc), strings.ReplaceAll(property, ".", "\\."))
		}
		if !val.Exists() {
			return "N"
		}
		return show([]byte(val.String()))
	case "aws_extract":
		kv := make(map[string]json.RawMessage)
		if err := json.Unmarshal(doc, &kv); err != nil {
			return "E"
		}
		out := make(map[string][]byte, len(kv))
		for k, v := range kv {
			var s string
			if err := json.Unmarshal(v, &s); err == nil {
				out[k] = []byte(s)
			} else {
				out[k] = v
			}
		}
		return entries(out)
	case "merge":
		return merge(property, doc)
	}
	fmt.Fprintln(os.Stderr, "go_json_ref: unknown op "+op)
	os.Exit(2)
	return ""
}

type mergeOptions struct {
	Into            string   `json:"into"`
	Priority        []string `json:"priority"`
	IgnoreNotFound  bool     `json:"ignoreNotFound"`
	IgnoreConflicts bool     `json:"ignoreConflicts"`
	JSON            bool     `json:"json"`
}

// ESO's RewriteMerge, as runtime/esutils does it: values in key order with
// the priority keys last, each decoded into map[string]any, later members
// winning; Extract gives GetByteValue of the merged members, JSON keeps the
// input and adds the merged object (an Encoder without HTML escaping).
func merge(options string, doc []byte) string {
	var o mergeOptions
	if err := json.Unmarshal([]byte(options), &o); err != nil {
		fmt.Fprintln(os.Stderr, "go_json_ref: bad merge options")
		os.Exit(2)
	}
	var strs map[string]string
	if err := json.Unmarshal(doc, &strs); err != nil {
		fmt.Fprintln(os.Stderr, "go_json_ref: a merge input is not a map of strings")
		os.Exit(2)
	}
	in := make(map[string][]byte, len(strs))
	for k, v := range strs {
		b, err := hex.DecodeString(v)
		if err != nil {
			fmt.Fprintln(os.Stderr, "go_json_ref: a merge input value is not hex")
			os.Exit(2)
		}
		in[k] = b
	}
	keys := make([]string, 0, len(in))
	for k := range in {
		prio := false
		for _, p := range o.Priority {
			prio = prio || p == k
		}
		if !prio {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	keys = append(keys, o.Priority...)
	merged := make(map[string]any)
	conflicts := []string{}
	for _, k := range keys {
		v, ok := in[k]
		if !ok {
			if o.IgnoreNotFound {
				continue
			}
			return "E"
		}
		var m map[string]any
		if err := json.Unmarshal(v, &m); err != nil {
			return "E"
		}
		for mk, mv := range m {
			if _, seen := merged[mk]; seen {
				conflicts = append(conflicts, mk)
			}
			merged[mk] = mv
		}
	}
	if !o.IgnoreConflicts && len(conflicts) > 0 {
		sort.Strings(conflicts)
		parts := make([]string, 0, len(conflicts))
		for _, c := range conflicts {
			parts = append(parts, show([]byte(c)))
		}
		return "C " + strings.Join(parts, " ")
	}
	out := make(map[string][]byte)
	if !o.JSON {
		for k, v := range merged {
			b, err := byteValue(v)
			if err != nil {
				return "E"
			}
			out[k] = b
		}
		return entries(out)
	}
	if o.Into == "" {
		return "E"
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(merged); err != nil {
		return "E"
	}
	for k, v := range in {
		out[k] = v
	}
	out[o.Into] = fixEscapes(bytes.TrimRight(buf.Bytes(), "\n"))
	return entries(out)
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<22), 1<<22)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 3)
		if len(parts) != 3 {
			fmt.Fprintln(os.Stderr, "go_json_ref: a line is not \"<op> <property> <document>\"")
			os.Exit(2)
		}
		fmt.Fprintln(w, answer(parts[0], string(field(parts[1])), field(parts[2])))
	}
}
