// ESO's own template helpers that Go's standard library can express, written
// after External Secrets Operator's runtime/template/v2 (pem.go,
// pem_chain.go, decrypt.go at cc5bfbc2234ace9cb0caff4ea89c435cf517b27b):
// ESO's module itself (and go-pkcs12, jwx for its PKCS#12 and JWK helpers)
// is not packaged in Debian, so the reference re-states these few functions
// on crypto/x509 and encoding/pem, as ESO's code does.
package main

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"strings"
	"text/template"

	"golang.org/x/crypto/bcrypt"
)

func esoFuncs() template.FuncMap {
	return template.FuncMap{
		"filterPEM":       filterPEM,
		"filterCertChain": filterCertChain,
		"certSANs":        certSANs,
		"rsaDecrypt":      rsaDecrypt,
		"toYaml":          toYAML,
		"fromYaml":        fromYAML,
	}
}

// esoSprigFuncs: functions of ESO's own copy of Sprig
// (runtime/template/v2/sprig) that differ from Debian's Sprig 3.2.3.
func esoSprigFuncs() template.FuncMap {
	return template.FuncMap{"htpasswd": htpasswd}
}

// htpasswd as ESO's Sprig has it: a third argument names the hash ("sha"
// or bcrypt).
func htpasswd(username, password, hashAlgorithm string) string {
	if strings.Contains(username, ":") {
		return fmt.Sprintf("invalid username: %s", username)
	}
	if hashAlgorithm == "sha" {
		sum := sha1.Sum([]byte(password))
		return fmt.Sprintf("%s:{SHA}%s", username, base64.StdEncoding.EncodeToString(sum[:]))
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return fmt.Sprintf("%s:failed to encrypt string with bcrypt: %s", username, err)
	}
	return fmt.Sprintf("%s:%s", username, hash)
}

func trimJunk(input string) string {
	if i := strings.Index(input, "-----BEGIN"); i >= 0 {
		return input[i:]
	}
	return input
}

func filterPEM(pemType, input string) (string, error) {
	data := []byte(trimJunk(input))
	var blocks, rest []byte
	for {
		var block *pem.Block
		block, rest = pem.Decode(data)
		data = rest
		if block == nil {
			break
		}
		if !strings.EqualFold(block.Type, pemType) {
			continue
		}
		var buf bytes.Buffer
		if err := pem.Encode(&buf, block); err != nil {
			return "", err
		}
		blocks = append(blocks, buf.Bytes()...)
	}
	if len(blocks) == 0 && len(rest) != 0 {
		return "", errors.New("error filtering pem: found junk")
	}
	return string(blocks), nil
}

func isRoot(c *x509.Certificate) bool {
	return c.AuthorityKeyId == nil || bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId)
}

func pemOf(certs ...*x509.Certificate) string {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return string(out)
}

// orderChain: each certificate's parent is the first other one whose subject
// key id is its authority key id; the leaf is no one's parent.
func orderChain(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		block, rest := pem.Decode(data)
		data = rest
		if block == nil {
			break
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	parent := make([]int, len(certs))
	isParent := make([]bool, len(certs))
	for i := range certs {
		parent[i] = -1
		for j := range certs {
			if i != j && bytes.Equal(certs[i].AuthorityKeyId, certs[j].SubjectKeyId) {
				isParent[j] = true
				parent[i] = j
				break
			}
		}
	}
	leaf := -1
	for i := range certs {
		if !isParent[i] {
			if leaf >= 0 {
				return nil, errors.New("found multiple leaf or disjunct certificates")
			}
			leaf = i
		}
	}
	if leaf < 0 {
		return nil, errors.New("no leaf certificate found")
	}
	var chain []*x509.Certificate
	for at := leaf; at >= 0; at = parent[at] {
		if len(chain) >= len(certs) {
			return nil, errors.New("constructing chain resulted in cycle")
		}
		chain = append(chain, certs[at])
	}
	return chain, nil
}

func filterCertChain(certType, input string) (string, error) {
	chain, err := orderChain([]byte(input))
	if err != nil {
		return "", err
	}
	switch certType {
	case "leaf":
		if c := chain[0]; c.AuthorityKeyId != nil && !bytes.Equal(c.AuthorityKeyId, c.SubjectKeyId) {
			return pemOf(c), nil
		}
	case "intermediate":
		var mid []*x509.Certificate
		for _, c := range chain[1:] {
			if isRoot(c) {
				break
			}
			mid = append(mid, c)
		}
		return pemOf(mid...), nil
	case "root":
		if c := chain[len(chain)-1]; isRoot(c) {
			return pemOf(c), nil
		}
	}
	return "", nil
}

func certSANs(input string) ([]string, error) {
	block, _ := pem.Decode([]byte(trimJunk(input)))
	if block == nil {
		return nil, fmt.Errorf("failed to decode PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("failed to parse certificate: %w", err)
	}
	sans := append([]string{}, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		sans = append(sans, ip.String())
	}
	sans = append(sans, cert.EmailAddresses...)
	for _, u := range cert.URIs {
		sans = append(sans, u.String())
	}
	return sans, nil
}

func parsePrivateKey(der []byte) (any, error) {
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("unable to parse private key type")
}

func rsaDecrypt(scheme, hashName, in, privateKey string) (string, error) {
	switch scheme {
	case "None":
		return in, nil
	case "RSA-OAEP":
		block, _ := pem.Decode([]byte(privateKey))
		if block == nil {
			return "", errors.New("failed to decode PEM block")
		}
		key, err := parsePrivateKey(block.Bytes)
		if err != nil {
			return "", fmt.Errorf("could not parse private key: %v", err)
		}
		rsaKey, ok := key.(*rsa.PrivateKey)
		if !ok {
			return "", errors.New("could not parse RSA private key")
		}
		var h hash.Hash
		switch hashName {
		case "SHA1":
			h = crypto.SHA1.New()
		case "SHA512":
			h = sha512.New()
		default:
			h = sha256.New()
		}
		out, err := rsa.DecryptOAEP(h, nil, rsaKey, []byte(in), nil)
		if err != nil {
			return "", fmt.Errorf("error decrypting data with RSA: %v", err)
		}
		return string(out), nil
	default:
		return "", fmt.Errorf("decryption scheme %v is not supported", scheme)
	}
}
