import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Writes records as Java's client can and kafka-python's send() will not (null header values), to
 * partition 0 of a topic, in order: java -cp 'LIBS/*' ProduceRaw.java BOOTSTRAP TOPIC < records.
 * One record per line: key, value, then header names and values, tab-separated; \N is null.
 */
public class ProduceRaw {
  static byte[] bytes(String field) {
    return field.equals("\\N") ? null : field.getBytes(StandardCharsets.UTF_8);
  }

  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put("bootstrap.servers", args[0]);
    props.put("acks", "all");
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    try (KafkaProducer<byte[], byte[]> producer =
        new KafkaProducer<>(props, new ByteArraySerializer(), new ByteArraySerializer())) {
      for (String line = in.readLine(); line != null; line = in.readLine()) {
        String[] f = line.split("\t", -1);
        ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(args[1], 0, bytes(f[0]), bytes(f[1]));
        for (int i = 2; i + 1 < f.length; i += 2) record.headers().add(f[i], bytes(f[i + 1]));
        producer.send(record).get();
      }
    }
  }
}
