// rewrite_ref: what ESO does to dataFrom keys (pkg/utils: RewriteRegexp's
// regexp.Compile + ReplaceAllString, ConvertKeys with the Default strategy,
// ValidateKeys), written from ESO's code on Go's standard library. The
// reference for rewrite_diff.cpp.
//
// Input: one request per line, fields hex-encoded and separated by a space:
//
//	R <pattern> <target> <key>   the key rewritten; "E<hex message>" if the
//	                             pattern does not compile
//	K <key>                      "<converted key> <validation>", the validation
//	                             "ok" or "E<hex message>"
//
// Output: one line per request, results hex-encoded ("-" for empty).
package main

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"unicode"
)

func show(s string) string {
	if s == "" {
		return "-"
	}
	return hex.EncodeToString([]byte(s))
}

func convert(str string) string {
	rs := []rune(str)
	out := make([]string, len(rs))
	for i, r := range rs {
		if !unicode.IsNumber(r) && !unicode.IsLetter(r) && r != '-' && r != '.' && r != '_' {
			out[i] = "_"
		} else {
			out[i] = string(r)
		}
	}
	return strings.Join(out, "")
}

func validate(key string) error {
	if len(key) == 0 {
		return nil
	}
	if len(key) > 253 {
		return fmt.Errorf("key has length %d but max is 253: (following is truncated): %s", len(key), key[:253])
	}
	for _, c := range key {
		if !unicode.IsLetter(c) && !unicode.IsNumber(c) && c != '-' && c != '.' && c != '_' {
			return fmt.Errorf("key has invalid character %c, only alphanumeric, '-', '.' and '_' are allowed: %s", c, key)
		}
	}
	return nil
}

func field(s string) (string, error) {
	if s == "-" {
		return "", nil
	}
	b, err := hex.DecodeString(s)
	return string(b), err
}

func answer(line string) (string, error) {
	f := strings.Split(line, " ")
	args := make([]string, 0, len(f)-1)
	for _, h := range f[1:] {
		s, err := field(h)
		if err != nil {
			return "", err
		}
		args = append(args, s)
	}
	switch {
	case f[0] == "R" && len(args) == 3:
		re, err := regexp.Compile(args[0])
		if err != nil {
			return "E" + hex.EncodeToString([]byte(err.Error())), nil
		}
		return show(re.ReplaceAllString(args[2], args[1])), nil
	case f[0] == "K" && len(args) == 1:
		v := "ok"
		if err := validate(args[0]); err != nil {
			v = "E" + hex.EncodeToString([]byte(err.Error()))
		}
		return show(convert(args[0])) + " " + v, nil
	}
	return "", errors.New("a malformed request")
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		out, err := answer(sc.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, "rewrite_ref:", err)
			os.Exit(2)
		}
		fmt.Fprintln(w, out)
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "rewrite_ref:", err)
		os.Exit(2)
	}
}
