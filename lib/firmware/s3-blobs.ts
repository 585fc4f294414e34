/**
 * Firmware blobs as objects in an S3-compatible bucket (FIRMWARE_STORE=s3: AWS, MinIO, Garage, Ceph RGW, S3Proxy),
 * so that any number of replicas share them without a volume. An upload streams into a temporary object through
 * multipart parts (at most one part, 5 MiB, held in memory per upload), then is copied to its key inside the bucket.
 * A download reads the object whole into the memory cache, or streams the requested range with a ranged GET.
 */
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  paginateListObjectsV2,
  ListMultipartUploadsCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { RangeReader } from "../stored-file.ts";
import { BlobMissing, type BlobEntry, type BlobStorage } from "./blobs.ts";

export type S3Settings = {
  endpoint: string | undefined;
  region: string;
  bucket: string;
  accessKeyId: string | undefined;
  secretAccessKey: string | undefined;
  forcePathStyle: boolean;
};

/** The smallest part S3 accepts: an upload holds at most this much of an image in memory. */
const PART_BYTES = 5 * 1024 * 1024;

const notFound = (error: unknown) => {
  const { name, $metadata } = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return name === "NoSuchKey" || name === "NotFound" || $metadata?.httpStatusCode === 404;
};
const missingAsBlobMissing = (key: string) => (error: unknown) => {
  throw notFound(error) ? new BlobMissing(`${key}: ${(error as Error).message}`) : error;
};

export function createS3Blobs(settings: S3Settings): BlobStorage & { client: S3Client } {
  const Bucket = settings.bucket;
  const client = new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    forcePathStyle: settings.forcePathStyle,
    // Without keys the SDK's own chain applies (environment, web identity, instance role).
    credentials: settings.accessKeyId && settings.secretAccessKey ? { accessKeyId: settings.accessKeyId, secretAccessKey: settings.secretAccessKey } : undefined,
    // Checksums only where the API demands them: not every S3-compatible server knows the newer checksum headers.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  });

  /** Reads ranges of `key` with ranged GETs; a stream destroyed early (the client went) stops its GET. */
  function rangeReader(key: string): RangeReader {
    const controller = new AbortController();
    async function* range(start: number, end: number) {
      const { Body } = await client.send(new GetObjectCommand({ Bucket, Key: key, Range: `bytes=${start}-${end}` }), { abortSignal: controller.signal });
      yield* Body as Readable;
    }
    return {
      createReadStream: ({ start, end, highWaterMark }) => Readable.from(range(start, end), { objectMode: false, highWaterMark }),
      close: async () => controller.abort(),
    };
  }

  return {
    client,
    where: `s3://${Bucket}${settings.endpoint ? ` at ${settings.endpoint}` : ""}`,

    async init() {
      await client.send(new HeadBucketCommand({ Bucket })).catch((error) => {
        throw new Error(`The firmware bucket "${Bucket}" cannot be reached (${notFound(error) ? "it does not exist" : (error as Error).name || (error as Error).message})`, { cause: error });
      });
    },

    async writeTemp(temp, chunks) {
      const upload = new Upload({
        client,
        params: { Bucket, Key: temp, Body: Readable.from(chunks, { objectMode: false }), ContentType: "application/octet-stream" },
        partSize: PART_BYTES,
        queueSize: 1,
        leavePartsOnError: false,
      });
      await upload.done();
    },

    async promote(temp, key) {
      await client.send(new CopyObjectCommand({ Bucket, Key: key, CopySource: `${Bucket}/${encodeURIComponent(temp)}` }));
      await client.send(new DeleteObjectCommand({ Bucket, Key: temp }));
    },

    async readAll(key) {
      const { Body } = await client.send(new GetObjectCommand({ Bucket, Key: key })).catch(missingAsBlobMissing(key));
      const bytes = await Body!.transformToByteArray();
      // A view of the bytes read, not a second copy of the image.
      return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    },

    async open(key) {
      const head = await client.send(new HeadObjectCommand({ Bucket, Key: key })).catch(missingAsBlobMissing(key));
      return { size: head.ContentLength ?? 0, reader: rangeReader(key) };
    },

    remove: (key) => client.send(new DeleteObjectCommand({ Bucket, Key: key })).then(() => {}),

    async removeUnder(prefix) {
      for await (const page of paginateListObjectsV2({ client }, { Bucket, Prefix: prefix })) {
        for (const object of page.Contents ?? []) if (object.Key && !object.Key.endsWith("/")) await client.send(new DeleteObjectCommand({ Bucket, Key: object.Key }));
      }
    },

    async *list(): AsyncIterable<BlobEntry> {
      for await (const page of paginateListObjectsV2({ client }, { Bucket })) {
        // A key ending in "/" is a folder marker (some stores list their directories so), never an image of ours.
        for (const object of page.Contents ?? []) if (object.Key && !object.Key.endsWith("/")) yield { key: object.Key, modifiedMs: object.LastModified?.getTime() ?? Date.now() };
      }
    },

    async tidy(_modelCodes, staleBefore) {
      const { Uploads = [] } = await client.send(new ListMultipartUploadsCommand({ Bucket }));
      for (const { Key, UploadId, Initiated } of Uploads) {
        if (Key && UploadId && (Initiated?.getTime() ?? 0) < staleBefore) await client.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }));
      }
    },
  };
}
