// fake-metrics serves the resource metrics API (metrics.k8s.io/v1beta1)
// behind the API server's aggregation layer, in place of metrics-server,
// for the HPA comparison in k8s-adapter/tests/controlplane.rs: each
// namespace's pods use a scripted fraction of their CPU request, the k-th
// value of the series for the k-th fetch (the HPA controller fetches once
// per sync), and every fetch is logged with what the controller saw: the
// target's replicas, the pods, their readiness and the usage answered.
//
// A second, plain-HTTP loopback port takes the series and hands out the
// logs:
//
//	PUT /series/{namespace}?deployment=NAME   body: [0.5, 1.2, ...]
//	GET /log/{namespace}                      the fetches so far (JSON)
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"math"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// window is the interval a sample averages over, as metrics-server reports it.
const window = "1s"

type podSeen struct {
	Name     string  `json:"name"`
	Phase    string  `json:"phase"`
	Deleting bool    `json:"deleting"`
	Ready    bool    `json:"ready"`
	Started  float64 `json:"started"`
	Since    float64 `json:"ready_since"`
	Request  int64   `json:"request_milli"`
	Usage    *int64  `json:"usage_milli"`
}

type fetch struct {
	Time     float64   `json:"time"`
	Sampled  float64   `json:"sampled"`
	Level    float64   `json:"level"`
	Replicas int64     `json:"replicas"`
	Pods     []podSeen `json:"pods"`
}

type series struct {
	deployment string
	levels     []float64
	fetches    []fetch
}

type server struct {
	api    string
	client *http.Client
	mu     sync.Mutex
	byNs   map[string]*series
}

func (s *server) get(path string, out any) error {
	resp, err := s.client.Get(s.api + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	return json.Unmarshal(body, out)
}

// milli reads a CPU quantity ("250m", "1", "0.5") in millicores.
func milli(q string) int64 {
	if strings.HasSuffix(q, "m") {
		v, _ := strconv.ParseInt(strings.TrimSuffix(q, "m"), 10, 64)
		return v
	}
	v, _ := strconv.ParseFloat(q, 64)
	return int64(math.Round(v * 1000))
}

func unix(t string) float64 {
	p, err := time.Parse(time.RFC3339, t)
	if err != nil {
		return 0
	}
	return float64(p.UnixNano()) / 1e9
}

type podList struct {
	Items []struct {
		Metadata struct {
			Name              string  `json:"name"`
			CreationTimestamp string  `json:"creationTimestamp"`
			DeletionTimestamp *string `json:"deletionTimestamp"`
		} `json:"metadata"`
		Spec struct {
			Containers []struct {
				Name      string `json:"name"`
				Resources struct {
					Requests map[string]string `json:"requests"`
				} `json:"resources"`
			} `json:"containers"`
		} `json:"spec"`
		Status struct {
			Phase      string `json:"phase"`
			StartTime  string `json:"startTime"`
			Conditions []struct {
				Type               string `json:"type"`
				Status             string `json:"status"`
				LastTransitionTime string `json:"lastTransitionTime"`
			} `json:"conditions"`
		} `json:"status"`
	} `json:"items"`
}

type usage struct {
	CPU    string `json:"cpu"`
	Memory string `json:"memory"`
}

type containerMetrics struct {
	Name  string `json:"name"`
	Usage usage  `json:"usage"`
}

type objectMeta struct {
	Name              string `json:"name"`
	Namespace         string `json:"namespace"`
	CreationTimestamp string `json:"creationTimestamp"`
}

type podMetrics struct {
	Metadata   objectMeta         `json:"metadata"`
	Timestamp  string             `json:"timestamp"`
	Window     string             `json:"window"`
	Containers []containerMetrics `json:"containers"`
}

// podMetrics answers one fetch for namespace ns and logs it.
func (s *server) podMetrics(ns, selector string) ([]podMetrics, error) {
	now := time.Now()
	// Timestamps travel with second precision, as the API's times do.
	sampled := now.Truncate(time.Second)
	s.mu.Lock()
	sr := s.byNs[ns]
	s.mu.Unlock()
	if sr == nil {
		return []podMetrics{}, nil
	}
	var scale struct {
		Spec struct {
			Replicas int64 `json:"replicas"`
		} `json:"spec"`
	}
	if err := s.get(fmt.Sprintf("/apis/apps/v1/namespaces/%s/deployments/%s/scale", ns, sr.deployment), &scale); err != nil {
		return nil, err
	}
	var pods podList
	q := ""
	if selector != "" {
		q = "?labelSelector=" + url.QueryEscape(selector)
	}
	if err := s.get(fmt.Sprintf("/api/v1/namespaces/%s/pods%s", ns, q), &pods); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := len(sr.fetches)
	level := sr.levels[min(k, len(sr.levels)-1)]
	f := fetch{Time: float64(now.UnixNano()) / 1e9, Sampled: float64(sampled.Unix()), Level: level, Replicas: scale.Spec.Replicas}
	out := []podMetrics{}
	for _, p := range pods.Items {
		seen := podSeen{
			Name:     p.Metadata.Name,
			Phase:    p.Status.Phase,
			Deleting: p.Metadata.DeletionTimestamp != nil,
			Started:  unix(p.Status.StartTime),
		}
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" {
				seen.Ready = c.Status == "True"
				seen.Since = unix(c.LastTransitionTime)
			}
		}
		var cms []containerMetrics
		var total int64
		for _, c := range p.Spec.Containers {
			req := milli(c.Resources.Requests["cpu"])
			used := int64(math.Round(level * float64(req)))
			seen.Request += req
			total += used
			cms = append(cms, containerMetrics{
				Name:  c.Name,
				Usage: usage{CPU: fmt.Sprintf("%dm", used), Memory: "0"},
			})
		}
		// Only a running container has a sample, as with metrics-server.
		if p.Status.Phase == "Running" && !seen.Deleting {
			seen.Usage = &total
			out = append(out, podMetrics{
				Metadata:   objectMeta{Name: p.Metadata.Name, Namespace: ns, CreationTimestamp: p.Metadata.CreationTimestamp},
				Timestamp:  sampled.UTC().Format(time.RFC3339),
				Window:     window,
				Containers: cms,
			})
		}
		f.Pods = append(f.Pods, seen)
	}
	sr.fetches = append(sr.fetches, f)
	return out, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) metricsAPI(w http.ResponseWriter, r *http.Request) {
	const base = "/apis/metrics.k8s.io/v1beta1"
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == base:
		writeJSON(w, map[string]any{
			"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1",
			"resources": []map[string]any{
				{"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": []string{"get", "list"}},
				{"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": []string{"get", "list"}},
			},
		})
	case path == base+"/nodes":
		writeJSON(w, map[string]any{"kind": "NodeMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": map[string]any{}, "items": []any{}})
	case strings.HasPrefix(path, base+"/namespaces/") && strings.HasSuffix(path, "/pods"):
		ns := strings.TrimSuffix(strings.TrimPrefix(path, base+"/namespaces/"), "/pods")
		items, err := s.podMetrics(ns, r.URL.Query().Get("labelSelector"))
		if err != nil {
			log.Printf("fetch %s: %v", ns, err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, map[string]any{"kind": "PodMetricsList", "apiVersion": "metrics.k8s.io/v1beta1", "metadata": map[string]any{}, "items": items})
	default:
		http.NotFound(w, r)
	}
}

func (s *server) control(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/series/"):
		ns := strings.TrimPrefix(r.URL.Path, "/series/")
		var levels []float64
		if err := json.NewDecoder(r.Body).Decode(&levels); err != nil || len(levels) == 0 {
			http.Error(w, "the body must be a non-empty JSON array of numbers", http.StatusBadRequest)
			return
		}
		d := r.URL.Query().Get("deployment")
		if d == "" {
			http.Error(w, "?deployment= is required", http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.byNs[ns] = &series{deployment: d, levels: levels}
		s.mu.Unlock()
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/log/"):
		ns := strings.TrimPrefix(r.URL.Path, "/log/")
		s.mu.Lock()
		defer s.mu.Unlock()
		sr := s.byNs[ns]
		if sr == nil {
			http.NotFound(w, r)
			return
		}
		// A series not fetched yet is an empty list, not JSON null.
		fetches := sr.fetches
		if fetches == nil {
			fetches = []fetch{}
		}
		writeJSON(w, fetches)
	default:
		http.NotFound(w, r)
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:26444", "the metrics API (HTTPS)")
	control := flag.String("control", "127.0.0.1:26445", "series and logs (plain HTTP, loopback)")
	cert := flag.String("cert", "", "serving certificate")
	key := flag.String("key", "", "serving key")
	api := flag.String("api", "", "the API server's URL")
	ca := flag.String("ca", "", "the API server's CA")
	clientCert := flag.String("client-cert", "", "client certificate for the API server")
	clientKey := flag.String("client-key", "", "client key for the API server")
	flag.Parse()

	pem, err := os.ReadFile(*ca)
	if err != nil {
		log.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	pair, err := tls.LoadX509KeyPair(*clientCert, *clientKey)
	if err != nil {
		log.Fatal(err)
	}
	s := &server{
		api: strings.TrimSuffix(*api, "/"),
		client: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}}},
		},
		byNs: map[string]*series{},
	}
	go func() {
		log.Fatal(http.ListenAndServe(*control, http.HandlerFunc(s.control)))
	}()
	log.Fatal(http.ListenAndServeTLS(*listen, *cert, *key, http.HandlerFunc(s.metricsAPI)))
}
