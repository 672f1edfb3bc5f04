package dev.pocketrec.core;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.util.Arrays;
import java.util.Random;
import org.junit.Test;

/** Summation, log-softmax and ranking agree with numpy bit for bit (expected values from numpy). */
public class NumericsTest {

  /** a[i] = ±(((i * 7919) % 1000) + 1) * 2^((i % 9) * 7 - 30): exact inputs of mixed scale. */
  private static double[] mixedScale(int n) {
    double[] a = new double[n];
    for (int i = 0; i < n; i++) {
      a[i] = Math.scalb((double) ((i * 7919) % 1000 + 1), (i % 9) * 7 - 30) * (i % 3 == 0 ? -1 : 1);
    }
    return a;
  }

  @Test
  public void pairwiseSumMatchesNumpy() {
    int[] sizes = {3, 8, 13, 100, 128, 129, 300, 1000};
    double[] numpy = { // float(np.sum(a)).hex() for each size
      0x1.a717fe0000000p-7, 0x1.ae0364f909c60p+27, 0x1.645c06c9ee8f7p+34, 0x1.6c807a3f3f5aep+38,
      0x1.def0780a32630p+38, 0x1.def0780a326cep+38, 0x1.0780eb0e6c122p+40, 0x1.b60a778ea0632p+41
    };
    for (int i = 0; i < sizes.length; i++) {
      assertEquals("n=" + sizes[i], numpy[i], PairwiseSum.sum(mixedScale(sizes[i])), 0.0);
    }
    double[] tenths = new double[10];
    Arrays.fill(tenths, 0.1);
    assertEquals(1.0, PairwiseSum.sum(tenths), 0.0); // a plain loop gives 0.9999999999999999
  }

  @Test
  public void reduceatSumMatchesNumpy() {
    double[] a = mixedScale(300);
    int[] sizes = {1, 9, 10, 130, 300};
    double[] numpy = { // float(np.add.reduceat(a[:n], [0])[0]).hex()
      -0x1.0000000000000p-30, 0x1.645c06c9f2139p+34, 0x1.645c06c9f2139p+34,
      0x1.def0780a2e1cdp+38, 0x1.0780eb0e6c122p+40
    };
    for (int i = 0; i < sizes.length; i++) {
      assertEquals("n=" + sizes[i], numpy[i], PairwiseSum.reduceat(a, 0, sizes[i]), 0.0);
    }
  }

  @Test
  public void childLogSoftmaxMatchesNumpy() {
    float[] logits = {1.5f, -2.25f, 3.0f, 0.1f, 7.75f, -1e30f};
    double[] numpy = { // pocketrec._search._segment_log_softmax, float.hex
      -0x1.90b42eda4cd85p+2, -0x1.30b42eda4cd85p+2, -0x1.ea4dc8724cd85p+2,
      -0x1.685db499b0a00p-7, -0x1.93e5940000000p+99
    };
    assertClose(numpy, ChildLogSoftmax.apply(logits, new int[] {0, 2, 3, 4, 5}));
    float[] many = new float[40]; // enough codes that the sum goes pairwise
    int[] even = new int[20];
    for (int i = 0; i < 40; i++) {
      many[i] = (float) (((i * 37) % 23 - 11) / 3.0);
    }
    for (int i = 0; i < 20; i++) {
      even[i] = 2 * i;
    }
    double[] numpyMany = {
      -0x1.0feb9c0beef0cp+3, -0x1.b52c8d17dde18p+2, -0x1.4a81e277dde18p+2, -0x1.bfae6f2fbbc30p+1,
      -0x1.d4b2345f77860p+0, -0x1.f52c8d17dde18p+2, -0x1.8a81e297dde18p+2, -0x1.1fd737b7dde18p+2,
      -0x1.6a591a2fbbc30p+1, -0x1.2a07885f77860p+0, -0x1.ca81e217dde18p+2, -0x1.5fd737d7dde18p+2,
      -0x1.ea591a2fbbc30p+1, -0x1.1503c42fbbc30p+1, -0x1.0540f10beef0cp+3, -0x1.9fd73797dde18p+2,
      -0x1.352c8d17dde18p+2, -0x1.9503c52fbbc30p+1, -0x1.7f5ce05f77860p+0, -0x1.dfd73817dde18p+2
    };
    assertClose(numpyMany, ChildLogSoftmax.apply(many, even));
  }

  @Test
  public void childLogSoftmaxIsADistribution() {
    double[] out = ChildLogSoftmax.apply(new float[] {80f, 0f, -3f, 85f}, new int[] {0, 2});
    assertEquals(1.0, Math.exp(out[0]) + Math.exp(out[1]), 1e-15);
    double[] single = ChildLogSoftmax.apply(new float[] {5f, 9f}, new int[] {1});
    assertArrayEquals(new double[] {0.0}, single, 0);
    double[] nan = ChildLogSoftmax.apply(new float[] {Float.NaN, 1f}, new int[] {0, 1});
    assertTrue(Double.isNaN(nan[0]) && Double.isNaN(nan[1]));
  }

  /** Equal up to one unit in the last place: numpy's exp and log may round differently. */
  private static void assertClose(double[] want, double[] got) {
    assertEquals(want.length, got.length);
    for (int i = 0; i < want.length; i++) {
      assertEquals("entry " + i, want[i], got[i], Math.ulp(want[i]));
    }
  }

  @Test
  public void rankingIsStableDescendingWithNanLast() {
    double ninf = Double.NEGATIVE_INFINITY;
    double[] scores = {-1, 0, Double.NaN, -1, ninf, 0, ninf, 2};
    assertArrayEquals(new int[] {7, 1, 5, 0, 3, 4, 6, 2}, Ranking.top(scores, 8));
    assertArrayEquals(new int[] {7, 1, 5}, Ranking.top(scores, 3));
    assertArrayEquals(new int[] {7, 1, 5, 0, 3, 4, 6, 2}, Ranking.top(scores, 100));
    assertArrayEquals(new int[0], Ranking.top(scores, 0));
  }

  @Test
  public void rankingAgreesWithAFullSortOnRandomScores() {
    Random random = new Random(7);
    for (int trial = 0; trial < 50; trial++) {
      double[] scores = new double[1 + random.nextInt(200)];
      for (int i = 0; i < scores.length; i++) {
        scores[i] = random.nextInt(4) == 0 ? Double.NEGATIVE_INFINITY : random.nextInt(20);
      }
      Integer[] order = new Integer[scores.length];
      for (int i = 0; i < order.length; i++) {
        order[i] = i;
      }
      Arrays.sort(order, (a, b) -> Double.compare(scores[b], scores[a])); // stable
      int keep = random.nextInt(scores.length + 1);
      int[] want = new int[keep];
      for (int i = 0; i < keep; i++) {
        want[i] = order[i];
      }
      assertArrayEquals("trial " + trial, want, Ranking.top(scores, keep));
    }
  }
}
