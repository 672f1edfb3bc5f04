package dev.pocketrec.core;

/**
 * Summation in numpy's order, so that sums, and the log-softmax built on them, round exactly as
 * the Python SDK's do.
 *
 * <p>numpy adds a contiguous float64 run with pairwise summation: runs shorter than 8 are added
 * left to right, runs up to 128 elements with eight interleaved accumulators, and longer runs are
 * split in two halves (the first a multiple of 8 long). {@code np.sum} sums a whole run that way;
 * {@code np.add.reduceat} takes a segment's first element and adds the pairwise sum of the rest.
 * Floating-point addition is not associative, so a plain loop could differ in the last bits, and
 * near-tied beams could then rank differently than in Python.
 */
final class PairwiseSum {

  private static final int BLOCK = 128;

  private PairwiseSum() {}

  /** The sum of all of {@code values}, as {@code np.sum} computes it. */
  static double sum(double[] values) {
    return sum(values, 0, values.length);
  }

  /** The sum of {@code a[start, start + n)} as {@code np.add.reduceat} computes it (n >= 1). */
  static double reduceat(double[] a, int start, int n) {
    return a[start] + sum(a, start + 1, n - 1);
  }

  private static double sum(double[] a, int start, int n) {
    if (n < 8) {
      double res = 0.0;
      for (int i = 0; i < n; i++) {
        res += a[start + i];
      }
      return res;
    }
    if (n <= BLOCK) {
      double[] r = new double[8];
      System.arraycopy(a, start, r, 0, 8);
      int i = 8;
      for (; i < n - (n % 8); i += 8) {
        for (int j = 0; j < 8; j++) {
          r[j] += a[start + i + j];
        }
      }
      double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
      for (; i < n; i++) {
        res += a[start + i];
      }
      return res;
    }
    int half = n / 2;
    half -= half % 8;
    return sum(a, start, half) + sum(a, start + half, n - half);
  }
}
