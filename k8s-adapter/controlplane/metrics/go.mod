module selfheal.dev/controlplane/metrics

go 1.26
