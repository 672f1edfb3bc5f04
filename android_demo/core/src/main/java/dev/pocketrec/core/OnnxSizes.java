package dev.pocketrec.core;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;

/**
 * How many bytes of an ONNX graph are catalogue-sized tables (item-id embeddings and the like),
 * measured as {@code pocketrec bench} measures them, so that phone and desktop records report the
 * same {@code bundle.bytes} split.
 *
 * <p>A top-level initializer counts when it has dimensions and its first dimension is at least
 * the catalogue size; it weighs the length of its {@code raw_data}, or 4 bytes per element when
 * it keeps its values elsewhere (typed fields or external data). Only the few protobuf fields on
 * that path are decoded ({@code ModelProto.graph}, {@code GraphProto.initializer}, {@code
 * TensorProto.dims} and {@code raw_data}); everything else is skipped by its wire type, so the
 * graph is never loaded.
 */
public final class OnnxSizes {

  private static final int MODEL_GRAPH = 7;
  private static final int GRAPH_INITIALIZER = 5;
  private static final int TENSOR_DIMS = 1;
  private static final int TENSOR_RAW_DATA = 9;

  private static final int VARINT = 0;
  private static final int FIXED64 = 1;
  private static final int LENGTH_DELIMITED = 2;
  private static final int FIXED32 = 5;

  private OnnxSizes() {}

  /**
   * Bytes of the catalogue-sized initializers of the ONNX model in {@code file}.
   *
   * @param numItems the catalogue size.
   * @throws IOException if the file cannot be read or is not a valid ONNX protobuf.
   */
  public static long catalogueTableBytes(Path file, int numItems) throws IOException {
    try (FileChannel channel = FileChannel.open(file, StandardOpenOption.READ)) {
      long size = channel.size();
      if (size > Integer.MAX_VALUE) {
        throw new IOException(file + " is larger than 2 GiB; keep big weights as external data");
      }
      ByteBuffer data = channel.map(FileChannel.MapMode.READ_ONLY, 0, size);
      try {
        return catalogueTableBytes(data, numItems);
      } catch (IllegalArgumentException e) {
        throw new IOException(file + " is not a valid ONNX model: " + e.getMessage(), e);
      }
    }
  }

  /**
   * Bytes of the catalogue-sized initializers of a serialized ONNX {@code ModelProto}.
   *
   * @throws IllegalArgumentException if the bytes are not valid protobuf.
   */
  public static long catalogueTableBytes(ByteBuffer model, int numItems) {
    long total = 0;
    Reader m = new Reader(model.duplicate());
    while (m.hasMore()) {
      int tag = m.tag();
      if (field(tag) == MODEL_GRAPH && wireType(tag) == LENGTH_DELIMITED) {
        Reader graph = m.message();
        while (graph.hasMore()) {
          int graphTag = graph.tag();
          if (field(graphTag) == GRAPH_INITIALIZER && wireType(graphTag) == LENGTH_DELIMITED) {
            total += tableBytes(graph.message(), numItems);
          } else {
            graph.skip(graphTag);
          }
        }
      } else {
        m.skip(tag);
      }
    }
    return total;
  }

  /** The weight of one TensorProto if it is catalogue-sized, else 0. */
  private static long tableBytes(Reader tensor, int numItems) {
    long firstDim = -1;
    long elements = 1;
    long rawBytes = 0;
    while (tensor.hasMore()) {
      int tag = tensor.tag();
      if (field(tag) == TENSOR_DIMS && wireType(tag) == VARINT) {
        long dim = tensor.varint();
        firstDim = firstDim < 0 ? dim : firstDim;
        elements *= dim;
      } else if (field(tag) == TENSOR_DIMS && wireType(tag) == LENGTH_DELIMITED) {
        Reader packed = tensor.message(); // packed repeated int64
        while (packed.hasMore()) {
          long dim = packed.varint();
          firstDim = firstDim < 0 ? dim : firstDim;
          elements *= dim;
        }
      } else if (field(tag) == TENSOR_RAW_DATA && wireType(tag) == LENGTH_DELIMITED) {
        rawBytes = tensor.message().remaining(); // a later occurrence replaces an earlier one
      } else {
        tensor.skip(tag);
      }
    }
    if (firstDim < 0 || firstDim < numItems) {
      return 0;
    }
    return rawBytes > 0 ? rawBytes : 4 * elements;
  }

  private static int field(int tag) {
    return tag >>> 3;
  }

  private static int wireType(int tag) {
    return tag & 7;
  }

  /** Sequential reads of protobuf wire-format values from a buffer region. */
  private static final class Reader {
    private final ByteBuffer buffer;

    Reader(ByteBuffer buffer) {
      this.buffer = buffer;
    }

    boolean hasMore() {
      return buffer.hasRemaining();
    }

    int remaining() {
      return buffer.remaining();
    }

    int tag() {
      long tag = varint();
      if (tag <= 0 || tag > Integer.MAX_VALUE) {
        throw new IllegalArgumentException("invalid field tag " + tag);
      }
      return (int) tag;
    }

    long varint() {
      long value = 0;
      for (int shift = 0; shift < 64; shift += 7) {
        if (!buffer.hasRemaining()) {
          throw new IllegalArgumentException("truncated varint");
        }
        byte b = buffer.get();
        value |= (long) (b & 0x7f) << shift;
        if (b >= 0) {
          return value;
        }
      }
      throw new IllegalArgumentException("varint longer than 10 bytes");
    }

    /** The next length-delimited value as a reader of its own. */
    Reader message() {
      int length = length();
      ByteBuffer part = buffer.slice();
      part.limit(length);
      buffer.position(buffer.position() + length);
      return new Reader(part);
    }

    void skip(int tag) {
      switch (wireType(tag)) {
        case VARINT:
          varint();
          break;
        case FIXED64:
          advance(8);
          break;
        case LENGTH_DELIMITED:
          advance(length());
          break;
        case FIXED32:
          advance(4);
          break;
        default:
          throw new IllegalArgumentException(
              "unsupported wire type " + wireType(tag) + " of field " + field(tag));
      }
    }

    private int length() {
      long length = varint();
      if (length < 0 || length > buffer.remaining()) {
        throw new IllegalArgumentException("length " + length + " runs past the end");
      }
      return (int) length;
    }

    private void advance(int bytes) {
      if (bytes > buffer.remaining()) {
        throw new IllegalArgumentException("field runs past the end");
      }
      buffer.position(buffer.position() + bytes);
    }
  }
}
