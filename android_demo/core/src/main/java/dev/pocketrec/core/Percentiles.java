package dev.pocketrec.core;

import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * p50, p90, p99 and mean of latency samples, computed as numpy computes them ({@code
 * np.percentile} with its default linear interpolation, {@code np.mean}), so that records from
 * {@code pocketrec bench} and from a phone compare directly.
 */
public final class Percentiles {

  private final double p50;
  private final double p90;
  private final double p99;
  private final double mean;

  private Percentiles(double p50, double p90, double p99, double mean) {
    this.p50 = p50;
    this.p90 = p90;
    this.p99 = p99;
    this.mean = mean;
  }

  /**
   * Summarises samples (for example milliseconds).
   *
   * @throws IllegalArgumentException if there are none.
   */
  public static Percentiles of(double[] samples) {
    if (samples.length == 0) {
      throw new IllegalArgumentException("percentiles need at least one sample");
    }
    double[] sorted = samples.clone();
    Arrays.sort(sorted);
    return new Percentiles(
        sortedPercentile(sorted, 50),
        sortedPercentile(sorted, 90),
        sortedPercentile(sorted, 99),
        PairwiseSum.sum(samples) / samples.length);
  }

  /**
   * The {@code q}-th percentile (0 to 100) of samples, as {@code np.percentile(samples, q)}.
   *
   * @throws IllegalArgumentException if there are no samples or q is out of range.
   */
  public static double percentile(double[] samples, double q) {
    if (samples.length == 0 || !(q >= 0 && q <= 100)) {
      throw new IllegalArgumentException("need samples and 0 <= q <= 100, got q=" + q);
    }
    double[] sorted = samples.clone();
    Arrays.sort(sorted);
    return sortedPercentile(sorted, q);
  }

  /** numpy's "linear" method: virtual index (n - 1) q, then a lerp that is exact at both ends. */
  private static double sortedPercentile(double[] sorted, double q) {
    double virtual = (sorted.length - 1) * (q / 100);
    int below = (int) Math.floor(virtual);
    double a;
    double b;
    if (virtual >= sorted.length - 1) {
      a = sorted[sorted.length - 1];
      b = a;
    } else {
      a = sorted[below];
      b = sorted[below + 1];
    }
    double t = virtual - below;
    double diff = b - a;
    return t >= 0.5 ? b - diff * (1 - t) : a + diff * t;
  }

  public double p50() {
    return p50;
  }

  public double p90() {
    return p90;
  }

  public double p99() {
    return p99;
  }

  public double mean() {
    return mean;
  }

  /** {@code {"p50", "p90", "p99", "mean"}}, the form a benchmark record uses. */
  public Map<String, Object> toJson() {
    Map<String, Object> json = new LinkedHashMap<>();
    json.put("p50", p50);
    json.put("p90", p90);
    json.put("p99", p99);
    json.put("mean", mean);
    return json;
  }
}
