// kubecheck decodes Kubernetes manifests strictly into the API's own Go types:
// an unknown or misspelt field, a wrong type or a bad quantity fails, the
// checks a cluster's API server would make on structure, without a cluster.
//
//	kubecheck FILE...   (multi-document YAML; custom resources are listed, not checked)
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

var types = map[string]func() any{
	"v1/ServiceAccount":            func() any { return &corev1.ServiceAccount{} },
	"v1/Service":                   func() any { return &corev1.Service{} },
	"v1/PersistentVolumeClaim":     func() any { return &corev1.PersistentVolumeClaim{} },
	"v1/ConfigMap":                 func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                    func() any { return &corev1.Secret{} },
	"apps/v1/Deployment":           func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":          func() any { return &appsv1.StatefulSet{} },
	"networking.k8s.io/v1/Ingress": func() any { return &networkingv1.Ingress{} },
	"policy/v1/PodDisruptionBudget": func() any {
		return &policyv1.PodDisruptionBudget{}
	},
}

// Custom resources whose Go types are not in k8s.io/api.
var custom = map[string]bool{"monitoring.coreos.com/v1/ServiceMonitor": true}

func checkFile(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return n, err
		}
		if head.Kind == "" {
			continue // an empty document
		}
		gvk := head.APIVersion + "/" + head.Kind
		what := fmt.Sprintf("%s: %s %q", path, gvk, head.Metadata.Name)
		if custom[gvk] {
			fmt.Printf("%s: custom resource, not checked\n", what)
			continue
		}
		mk, ok := types[gvk]
		if !ok {
			return n, fmt.Errorf("%s: unknown kind", what)
		}
		// Case-sensitive, like the API server (encoding/json would accept
		// "readOnlyRootFileSystem" for "readOnlyRootFilesystem").
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		strict, err := sigsjson.UnmarshalStrict(js, mk(), sigsjson.DisallowUnknownFields)
		if err != nil {
			return n, fmt.Errorf("%s: %w", what, err)
		}
		if len(strict) > 0 {
			return n, fmt.Errorf("%s: %v", what, errors.Join(strict...))
		}
		n++
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck FILE...")
		os.Exit(2)
	}
	for _, path := range os.Args[1:] {
		n, err := checkFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kubecheck:", err)
			os.Exit(1)
		}
		fmt.Printf("%s: %d objects decode strictly\n", path, n)
	}
}
