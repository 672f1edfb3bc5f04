package dev.pocketrec.core;

/**
 * The order in which beam search keeps candidates: higher score first, ties by lower index, NaN
 * last. This is numpy's stable {@code argsort(-scores)}, so both runtimes keep the same beams
 * even when scores tie exactly (for example -inf, or items with equal popularity).
 */
final class Ranking {

  private Ranking() {}

  /** Indices of the {@code keep} best scores, best first. */
  static int[] top(double[] scores, int keep) {
    keep = Math.min(keep, scores.length);
    // A bounded heap whose root is the worst kept index: O(n log keep).
    int[] heap = new int[keep];
    int size = 0;
    for (int i = 0; i < scores.length; i++) {
      if (size < keep) {
        heap[size] = i;
        siftUp(scores, heap, size++);
      } else if (keep > 0 && before(scores, i, heap[0])) {
        heap[0] = i;
        siftDown(scores, heap, 0, size);
      }
    }
    int[] out = new int[size];
    for (int j = size - 1; j >= 0; j--) {
      out[j] = heap[0];
      heap[0] = heap[--size];
      siftDown(scores, heap, 0, size);
    }
    return out;
  }

  /** Whether candidate {@code a} ranks before candidate {@code b}. */
  static boolean before(double[] scores, int a, int b) {
    double x = scores[a];
    double y = scores[b];
    boolean nanX = Double.isNaN(x);
    boolean nanY = Double.isNaN(y);
    if (nanX != nanY) {
      return nanY;
    }
    if (!nanX && x != y) {
      return x > y;
    }
    return a < b;
  }

  private static void siftUp(double[] scores, int[] heap, int i) {
    while (i > 0) {
      int parent = (i - 1) / 2;
      if (!before(scores, heap[parent], heap[i])) {
        return;
      }
      swap(heap, parent, i);
      i = parent;
    }
  }

  private static void siftDown(double[] scores, int[] heap, int i, int size) {
    while (true) {
      int worst = i;
      int left = 2 * i + 1;
      int right = left + 1;
      if (left < size && before(scores, heap[worst], heap[left])) {
        worst = left;
      }
      if (right < size && before(scores, heap[worst], heap[right])) {
        worst = right;
      }
      if (worst == i) {
        return;
      }
      swap(heap, i, worst);
      i = worst;
    }
  }

  private static void swap(int[] heap, int i, int j) {
    int t = heap[i];
    heap[i] = heap[j];
    heap[j] = t;
  }
}
