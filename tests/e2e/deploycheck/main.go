// deploycheck checks deployment files the way the tools that consume them
// would, without a cluster or a Docker engine:
//
//	deploycheck k8s FILE...     decode every object strictly into the Kubernetes API's
//	                            Go types (unknown or misspelt fields, wrong types and bad
//	                            quantities fail; custom resources are listed, not checked)
//	deploycheck dockerfile FILE parse with BuildKit's parser; its lint warnings fail too
//	deploycheck compose FILE    load with compose-go, which validates against the Compose spec
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
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

func checkK8s(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r := utilyaml.NewYAMLReader(bufio.NewReader(f))
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			fmt.Printf("%s: %d objects decode strictly\n", path, n)
			return nil
		}
		if err != nil {
			return err
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return err
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
			return fmt.Errorf("%s: unknown kind", what)
		}
		// Case-sensitive, like the API server (encoding/json would accept
		// "readOnlyRootFileSystem" for "readOnlyRootFilesystem").
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		strict, err := sigsjson.UnmarshalStrict(js, mk(), sigsjson.DisallowUnknownFields)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if len(strict) > 0 {
			return fmt.Errorf("%s: %w", what, errors.Join(strict...))
		}
		n++
	}
}

func checkDockerfile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := parser.Parse(f)
	if err != nil {
		return err
	}
	var warnings []string
	for _, w := range res.Warnings {
		warnings = append(warnings, w.Short)
	}
	lint := linter.New(&linter.Config{
		Warn: func(rule, _, _, msg string, _ []parser.Range) {
			warnings = append(warnings, rule+": "+msg)
		},
	})
	stages, _, err := instructions.Parse(res.AST, lint)
	if err != nil {
		return err
	}
	if len(warnings) > 0 {
		return fmt.Errorf("%s: %v", path, warnings)
	}
	fmt.Printf("%s: %d stages, no warnings\n", path, len(stages))
	return nil
}

func checkCompose(path string) error {
	// No environment: the file must stand on its own.
	opts, err := cli.NewProjectOptions([]string{path})
	if err != nil {
		return err
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		return err
	}
	names := p.ServiceNames()
	sort.Strings(names)
	fmt.Printf("%s: project %q, services %v\n", path, p.Name, names)
	return nil
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: deploycheck k8s|dockerfile|compose FILE...")
		os.Exit(2)
	}
	check := map[string]func(string) error{
		"k8s": checkK8s, "dockerfile": checkDockerfile, "compose": checkCompose,
	}[os.Args[1]]
	if check == nil {
		fmt.Fprintln(os.Stderr, "deploycheck: unknown check", os.Args[1])
		os.Exit(2)
	}
	for _, path := range os.Args[2:] {
		if err := check(path); err != nil {
			fmt.Fprintln(os.Stderr, "deploycheck:", err)
			os.Exit(1)
		}
	}
}
