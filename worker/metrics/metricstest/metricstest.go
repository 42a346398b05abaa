// Package metricstest reads metric values in tests, from a registry's
// Gather or a scraped /metrics page alike.
package metricstest

import dto "github.com/prometheus/client_model/go"

// Value returns a counter's or gauge's value, or a histogram's sample
// count, for the series of the family name whose task label is task (none
// when task is ""); -1 when there is no such series.
func Value(families []*dto.MetricFamily, name, task string) float64 {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			label := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "task" {
					label = l.GetValue()
				}
			}
			if label != task {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return -1
}
