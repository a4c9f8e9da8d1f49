// template_ref renders templates the way External Secrets Operator's
// template engine v2 does (runtime/template/v2): Go's text/template with the
// Sprig function map and ESO's PEM, certificate and RSA helpers (eso.go),
// option missingkey=error, the data as a map of strings.
// It is the reference side of rootseal's template_diff test.
//
// Protocol: one JSON object per line on stdin, {"t": <template, base64>,
// "d": {<key>: <value, base64>}, "now": [<Unix seconds>, <nanoseconds>]};
// "now", when given, is the instant Sprig's date functions take for the
// present (clock.go); one JSON object per line on stdout,
// {"ok": true, "out": <base64>} or {"ok": false, "err": "<message>"}.
// Built offline from Debian's packages (golang-go,
// golang-github-masterminds-sprig-dev) with GO111MODULE=off and
// GOPATH=/usr/share/gocode.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"text/template"
	"time"

	"github.com/Masterminds/sprig"
)

type request struct {
	T   []byte            `json:"t"`
	D   map[string][]byte `json:"d"`
	Now []int64           `json:"now,omitempty"`
}

type answer struct {
	Ok  bool   `json:"ok"`
	Out []byte `json:"out,omitempty"`
	Err string `json:"err,omitempty"`
}

func render(r request) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	funcs := sprig.TxtFuncMap()
	// ESO removes these from the map it gives templates.
	delete(funcs, "env")
	delete(funcs, "expandenv")
	// ESO's own helpers that the standard library can express (eso.go).
	for name, f := range esoFuncs() {
		if _, sprigHas := funcs[name]; !sprigHas {
			funcs[name] = f
		}
	}
	for name, f := range esoSprigFuncs() {
		funcs[name] = f
	}
	if len(r.Now) == 2 {
		fixClock(funcs, time.Unix(r.Now[0], r.Now[1]))
	}
	t, err := template.New("t").Option("missingkey=error").Funcs(funcs).Parse(string(r.T))
	if err != nil {
		return nil, err
	}
	data := make(map[string]string, len(r.D))
	for k, v := range r.D {
		data[k] = string(v)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var r request
		if err := json.Unmarshal(in.Bytes(), &r); err != nil {
			fmt.Fprintln(os.Stderr, "template_ref: bad request line:", err)
			os.Exit(2)
		}
		res, err := render(r)
		a := answer{Ok: err == nil, Out: res}
		if err != nil {
			a.Err = err.Error()
		}
		if err := out.Encode(a); err != nil {
			os.Exit(2)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "template_ref:", err)
		os.Exit(2)
	}
}
