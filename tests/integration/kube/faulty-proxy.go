// SPDX-License-Identifier: Apache-2.0

// A TLS front on 127.0.0.1 for batch-retry.t, in front of the testenv's
// kube-apiserver, that fails some writes on purpose. It speaks HTTP/2 (ALPN
// h2, as the apiserver does) with a certificate of its own, and forwards to
// the apiserver with the admin client certificate, so the client under test
// needs no credentials. Only writes (POST, PUT, PATCH, DELETE) whose path
// contains -match are touched; of those, by arrival order n = 1, 2, ...:
//
//	n % 5 == 1  429 TooManyRequests, not forwarded; details.retryAfterSeconds 1,
//	            and every other one also a Retry-After: 1 header
//	n % 5 == 3  500 InternalError, not forwarded
//	n % 7 == 5  forwarded, the apiserver's answer replaced by 500 (the write
//	            happened: the client cannot know)
//
// GET /__proxy/stats answers the counts as JSON and is not forwarded.
//
//	go run faulty-proxy.go -upstream https://127.0.0.1:PORT -pki DIR \
//	    -match /namespaces/NS/ -dir OUT
//
// writes OUT/ca.crt (the certificate to trust) and then OUT/port, and serves
// until killed (at most 10 minutes).
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

type stats struct {
	Seen           int64 `json:"seen"`             // requests received, stats excluded
	HTTP2          int64 `json:"http2"`            // of which over HTTP/2
	Writes         int64 `json:"writes"`           // writes matching -match
	Injected429    int64 `json:"injected_429"`     // of which answered 429
	Injected500    int64 `json:"injected_500"`     // answered 500, not forwarded
	Injected500Fwd int64 `json:"injected_500_fwd"` // forwarded, answer replaced by 500
}

var (
	mu sync.Mutex
	st stats
)

func status(w http.ResponseWriter, code int, reason, msg string, retryAfter bool) {
	body := map[string]interface{}{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]interface{}{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	}
	if code == 429 {
		body["details"] = map[string]interface{}{"retryAfterSeconds": 1}
	}
	b, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json")
	if retryAfter {
		w.Header().Set("Retry-After", "1")
	}
	w.WriteHeader(code)
	w.Write(b)
}

func selfSigned(dir string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "kmm faulty proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), pemCert, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func main() {
	upstream := flag.String("upstream", "", "apiserver URL")
	pki := flag.String("pki", "", "testenv pki directory (ca.crt, admin.crt, admin.key)")
	match := flag.String("match", "", "only writes whose path contains this fail")
	dir := flag.String("dir", "", "where ca.crt and port are written")
	flag.Parse()
	if *upstream == "" || *pki == "" || *match == "" || *dir == "" {
		log.Fatal("usage: faulty-proxy -upstream URL -pki DIR -match STR -dir OUT")
	}
	go func() { time.Sleep(10 * time.Minute); os.Exit(0) }()

	caPEM, err := os.ReadFile(filepath.Join(*pki, "ca.crt"))
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	admin, err := tls.LoadX509KeyPair(filepath.Join(*pki, "admin.crt"),
		filepath.Join(*pki, "admin.key"))
	if err != nil {
		log.Fatal(err)
	}
	up := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{admin}},
		ForceAttemptHTTP2: true,
	}, Timeout: 60 * time.Second}

	cert, err := selfSigned(*dir)
	if err != nil {
		log.Fatal(err)
	}

	handler := func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "GET" && r.URL.Path == "/__proxy/stats" {
			mu.Lock()
			b, _ := json.Marshal(st)
			mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		write := r.Method != "GET" && r.Method != "HEAD"
		mode := ""
		mu.Lock()
		st.Seen++
		if r.ProtoMajor == 2 {
			st.HTTP2++
		}
		if write && strings.Contains(r.URL.Path, *match) {
			st.Writes++
			n := st.Writes
			switch {
			case n%5 == 1:
				st.Injected429++
				mode = "429"
				if st.Injected429%2 == 0 {
					mode = "429h"
				}
			case n%5 == 3:
				st.Injected500++
				mode = "500"
			case n%7 == 5:
				st.Injected500Fwd++
				mode = "500fwd"
			}
		}
		mu.Unlock()
		switch mode {
		case "429", "429h":
			status(w, 429, "TooManyRequests", "injected by faulty-proxy", mode == "429h")
			return
		case "500":
			status(w, 500, "InternalError", "injected by faulty-proxy", false)
			return
		}
		req, err := http.NewRequest(r.Method, *upstream+r.URL.RequestURI(),
			bytes.NewReader(body))
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		for _, h := range []string{"Content-Type", "Accept", "User-Agent"} {
			if v := r.Header.Get(h); v != "" {
				req.Header.Set(h, v)
			}
		}
		resp, err := up.Do(req)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		if mode == "500fwd" {
			status(w, 500, "InternalError",
				fmt.Sprintf("injected by faulty-proxy after the apiserver answered %d",
					resp.StatusCode), false)
			return
		}
		if ct := resp.Header.Get("Content-Type"); ct != "" {
			w.Header().Set("Content-Type", ct)
		}
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			w.Header().Set("Retry-After", ra)
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(rb)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(handler),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	port := fmt.Sprintf("%d\n", ln.Addr().(*net.TCPAddr).Port)
	if err := os.WriteFile(filepath.Join(*dir, "port.tmp"), []byte(port), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename(filepath.Join(*dir, "port.tmp"), filepath.Join(*dir, "port")); err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ServeTLS(ln, "", ""))
}
