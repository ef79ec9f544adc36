// Creates a topic and writes records with the real Kafka Java client, so the
// adapter test sees partitions and log bytes. Run as a single-file program:
//   java -cp '<kafka libs>/*' KafkaSeed.java <bootstrap> <topic> <partitions> <records>
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaSeed {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(p)) {
            admin.createTopics(List.of(new NewTopic(args[1], Integer.parseInt(args[2]), (short) 1)))
                .all().get();
        }
        p.put("acks", "all");
        try (KafkaProducer<String, String> producer =
                new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < Integer.parseInt(args[3]); i++) {
                producer.send(new ProducerRecord<>(args[1], "key" + i, "value" + i));
            }
            producer.flush();
        }
    }
}
