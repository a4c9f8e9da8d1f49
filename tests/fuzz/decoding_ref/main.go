// decoding_ref: ESO's decodingStrategy (Base64, Base64URL, Auto) as ESO's
// Decode (pkg/utils) runs it: Go's encoding/base64 StdEncoding and
// URLEncoding, not Strict; Auto tries both and leaves the value as it is
// when neither decodes. The reference for decoding_diff.cpp.
//
// Input: one value per line, hex-encoded. Output: one line per value,
// "<std> <url> <auto>", each the hex of the result ("-" when empty) or "E"
// when the strategy refuses the value.
package main

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
)

func show(b []byte, err error) string {
	if err != nil {
		return "E"
	}
	if len(b) == 0 {
		return "-"
	}
	return hex.EncodeToString(b)
}

func auto(in []byte) []byte {
	if out, err := base64.StdEncoding.DecodeString(string(in)); err == nil {
		return out
	}
	if out, err := base64.URLEncoding.DecodeString(string(in)); err == nil {
		return out
	}
	return in
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		in, err := hex.DecodeString(sc.Text())
		if err != nil {
			fmt.Fprintln(os.Stderr, "decoding_ref: a line is not hex")
			os.Exit(2)
		}
		std, stdErr := base64.StdEncoding.DecodeString(string(in))
		url, urlErr := base64.URLEncoding.DecodeString(string(in))
		fmt.Fprintf(w, "%s %s %s\n", show(std, stdErr), show(url, urlErr), show(auto(in), nil))
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "decoding_ref:", err)
		os.Exit(2)
	}
}
