package dev.pocketrec.core;

/**
 * Log-softmax of a beam's logits over the codes that continue its prefix, in double precision.
 *
 * <p>Exactly the Python SDK's {@code _segment_log_softmax} for one beam: the maximum over the
 * valid codes is subtracted before exponentiating, and the log of the sum is added back: {@code
 * out = x - (log(sum(exp(x - max))) + max)}. Codes that no item continues get no probability
 * because they are never candidates.
 */
final class ChildLogSoftmax {

  private ChildLogSoftmax() {}

  /** Log-probabilities of {@code codes} (at least one) under {@code logits}. */
  static double[] apply(float[] logits, int[] codes) {
    int n = codes.length;
    double[] x = new double[n];
    double top = logits[codes[0]];
    for (int i = 0; i < n; i++) {
      x[i] = logits[codes[i]];
      top = Math.max(top, x[i]); // NaN propagates, as in np.maximum
    }
    double[] exp = new double[n];
    for (int i = 0; i < n; i++) {
      exp[i] = Math.exp(x[i] - top);
    }
    double logSum = Math.log(PairwiseSum.reduceat(exp, 0, n)) + top;
    double[] out = new double[n];
    for (int i = 0; i < n; i++) {
      out[i] = x[i] - logSum;
    }
    return out;
  }
}
